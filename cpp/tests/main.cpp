#include <cstdio>

#include "harness.h"

int main() {
  int ran = 0;
  for (auto& c : celer_test::registry()) {
    int before = celer_test::failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      celer_test::fail(__FILE__, __LINE__, std::string(c.name) + " threw: " + e.what());
    }
    std::printf("%s %s\n", celer_test::failures() == before ? "ok    " : "FAILED", c.name);
    ++ran;
  }
  int failed = celer_test::failures();
  std::printf("%d checks failed in %d tests\n", failed, ran);
  return failed == 0 && ran > 0 ? 0 : 1;
}
