// The decode loop allocates nothing: generate() of 40 tokens makes exactly as many heap
// allocations as generate() of 4 (everything is sized before the loop). Counted by replacing
// the global operator new in this test binary (every std container, shared_ptr and Tensor
// control block goes through it).
#include <atomic>
#include <cstdlib>
#include <new>

#include "engine/engine.h"
#include "harness.h"
#include "core/model.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace celer;

TEST(decode_loop_allocates_nothing) {
  ModelConfig c;
  c.hidden_size = 128;
  c.num_attention_heads = 4;  // head size 32: KIVI's groups of 32 channels fit
  c.num_key_value_heads = 2;
  c.vocab_size = 97;
  c.max_position_embeddings = 1024;
  c.resolve();
  const Model model = random_model(c, 3);
  Tensor ids = random_tokens(2, 6, c.vocab_size, 1);
  // Every registry version, and evicting ones whose small budgets fill within the run.
  std::vector<VersionSpec> specs = versions();
  for (Eviction e : {Eviction::Window, Eviction::HeavyHitters}) {
    VersionSpec v = find_version("v1");
    v.name = eviction_name(e), v.eviction = e, v.window = 12;
    (e == Eviction::Window ? v.sinks : v.heavy) = 4;
    specs.push_back(v);
  }
  for (const VersionSpec& version : specs) {
    Engine engine(model, version, 1024);
    auto count = [&](int64_t new_tokens) {
      GenerateOptions opt;
      opt.max_new_tokens = new_tokens;
      opt.sampling.temperature = 0.8;
      opt.sampling.top_k = 20;
      const long before = g_allocations.load();
      engine.generate(ids, nullptr, opt);
      return g_allocations.load() - before;
    };
    count(40);  // first call sizes the engine's buffers
    const long short_run = count(4), long_run = count(40);
    if (short_run != long_run)
      celer_test::fail(__FILE__, __LINE__, version.name + ": " + std::to_string(short_run) + " allocations for 4 tokens, " +
                                               std::to_string(long_run) + " for 40");
  }
}
