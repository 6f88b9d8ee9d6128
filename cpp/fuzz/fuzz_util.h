// Shared by the fuzz targets (cpp/fuzz/fuzz_*.cpp).
//
// A parser's expected answers to hostile bytes are celer's exceptions (FormatError for a bad
// file, IOError, ValueError); CELER_FUZZ_EXPECTED catches those and nothing else, so any other
// exception (std::length_error, std::out_of_range, ...) escapes to libFuzzer as a crash, as do
// sanitizer reports, timeouts and running out of memory.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"

#define CELER_FUZZ_EXPECTED(...)     \
  try {                              \
    __VA_ARGS__;                     \
  } catch (const celer::FormatError&) { \
  } catch (const celer::IOError&) {  \
  } catch (const celer::ValueError&) { \
  }

namespace celer_fuzz {

// Stops the run with a message: a property the target checks does not hold.
[[noreturn]] inline void violated(const char* what) {
  std::fprintf(stderr, "celer fuzz: property violated: %s\n", what);
  std::abort();
}

// The file loaders take a path: the input goes into one in-memory file (memfd) per process,
// rewritten on every run and opened through /proc/self/fd/N, so no disk is touched.
class MemFile {
 public:
  MemFile() {
    fd_ = ::memfd_create("celer_fuzz_input", MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  // Replaces the contents with data[0, n) and returns the path to open.
  const std::string& set(const uint8_t* data, size_t n) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    size_t done = 0;
    while (done < n) {
      ssize_t w = ::pwrite(fd_, data + done, n - done, off_t(done));
      if (w <= 0) std::abort();
      done += size_t(w);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

inline MemFile& input_file() {
  static MemFile file;
  return file;
}

}  // namespace celer_fuzz
