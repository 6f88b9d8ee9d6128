// A tiny test harness for the C++ unit tests (run by ctest): TEST(name) registers a function;
// CHECK* record a failure and continue; main returns non-zero when anything failed.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"

namespace celer_test {

// n values uniform on [-scale, scale), the same on every machine.
inline std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  celer::SplitMix64 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform_pm1() * scale;
  return v;
}

struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}
inline int& failures() {
  static int n = 0;
  return n;
}
struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};
inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "  FAILED %s:%d: %s\n", file, line, what.c_str());
  ++failures();
}

}  // namespace celer_test

#define CELER_CAT2(a, b) a##b
#define CELER_CAT(a, b) CELER_CAT2(a, b)
#define TEST(name)                                                                 \
  static void name();                                                              \
  static celer_test::Register CELER_CAT(register_, name)(#name, name);             \
  static void name()

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) celer_test::fail(__FILE__, __LINE__, #cond);                      \
  } while (0)

// |a - b| <= tol * max(1, |b|)
#define CHECK_NEAR(a, b, tol)                                                      \
  do {                                                                             \
    double _a = (a), _b = (b);                                                     \
    if (!(std::fabs(_a - _b) <= (tol) * std::fmax(1.0, std::fabs(_b))))            \
      celer_test::fail(__FILE__, __LINE__,                                         \
                       std::string(#a " ~ " #b ": ") + std::to_string(_a) + " vs " + \
                           std::to_string(_b));                                    \
  } while (0)

// The expression must throw exception type E.
#define CHECK_THROWS(E, expr)                                                      \
  do {                                                                             \
    bool _thrown = false;                                                          \
    try {                                                                          \
      (void)(expr);                                                                \
    } catch (const E&) {                                                           \
      _thrown = true;                                                              \
    } catch (...) {                                                                \
    }                                                                              \
    if (!_thrown) celer_test::fail(__FILE__, __LINE__, "expected " #E " from " #expr); \
  } while (0)
