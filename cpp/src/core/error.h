// Exceptions the core throws. The bindings map each to a Python exception class, so a bad
// file or argument becomes a clear Python error instead of a crash.
#pragma once
#include <stdexcept>
#include <string>

namespace celer {

// Bad argument or configuration (Python: ValueError).
struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// Malformed or inconsistent file contents (Python: celerinfer.FormatError, a ValueError).
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The file system said no: missing file, permission, short write (Python: OSError).
struct IOError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A long call stopped because its caller asked it to (GenerateOptions::should_stop; the
// bindings turn it into the KeyboardInterrupt that asked).
struct Interrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throw E with the message when the condition is false. The message is built before the call,
// whether or not it is needed: on paths that run per token use a plain `if` instead (the
// decode loop must not allocate; test_no_alloc.cpp checks).
template <class E = ValueError>
inline void require(bool ok, const std::string& message) {
  if (!ok) throw E(message);
}

}  // namespace celer
