#include "backend/cpu/threadpool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <system_error>

#include "core/error.h"

namespace celer {

namespace {
constexpr int64_t kSpinNs = 200000;  // 0.2 ms: longer than the gaps between a step's sections

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  require(num_threads >= 1 && num_threads <= kMaxThreads,
          "num_threads must be in [1, " + std::to_string(kMaxThreads) + "], got " + std::to_string(num_threads));
  if (const char* wait = std::getenv("CELER_POOL_WAIT")) {
    const std::string policy(wait);
    require(policy == "yield" || policy == "spin", "CELER_POOL_WAIT must be yield or spin, got '" + policy + "'");
    yield_while_spinning_ = policy == "yield";
  }
  try {
    for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (const std::system_error& e) {
    // The workers already started wait on this object's members: stop them before it goes.
    stop_workers();
    throw ValueError("cannot start " + std::to_string(num_threads) + " threads (" + e.what() + "); " +
                     std::to_string(workers_.size() + 1) + " could be started");
  }
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

ThreadPool::~ThreadPool() { stop_workers(); }

template <class Pred>
void ThreadPool::spin_then_wait(std::condition_variable& cv, Pred done) {
  const int64_t start = steady_ns();
  for (int i = 0; !done(); ++i) {
    cpu_relax();
    // sched_yield hands the core to any other runnable thread, else returns at once
    if (yield_while_spinning_ && (i & 15) == 15) sched_yield();
    if ((i & 255) == 255 && steady_ns() - start > kSpinNs) {
      std::unique_lock<std::mutex> lock(mutex_);
      cv.wait(lock, done);
      return;
    }
  }
}

namespace {
constexpr uint64_t kChunkBits = 16, kChunkMask = (uint64_t(1) << kChunkBits) - 1;
uint64_t claims_word(uint32_t generation, int64_t chunks, int64_t next) {
  return (uint64_t(generation) << 32) | (uint64_t(chunks) << kChunkBits) | uint64_t(next);
}
}  // namespace

bool ThreadPool::claim(uint32_t generation, int64_t* chunk) {
  uint64_t word = claims_.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t next = word & kChunkMask, chunks = (word >> kChunkBits) & kChunkMask;
    if (uint32_t(word >> 32) != generation || next >= chunks) return false;
    if (claims_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      *chunk = int64_t(next);
      return true;
    }
  }
}

void ThreadPool::run_chunk(int64_t c, int index) {
  const int64_t begin = std::min(n_, c * chunk_), end = std::min(n_, begin + chunk_);
  try {
    if (begin < end) (*job_)(begin, end, index);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    spin_then_wait(wake_, [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; });
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    const int64_t chunks = int64_t((claims_.load(std::memory_order_acquire) >> kChunkBits) & kChunkMask);
    for (int64_t c; claim(uint32_t(seen), &c);) {
      run_chunk(c, index);
      if (done_chunks_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(mutex_);  // pairs with a sleeping caller's wait
        done_.notify_one();
      }
    }
  }
}

void ThreadPool::run(int64_t n, ChunkFn fn, int64_t grain) {
  if (n <= 0) return;
  const int64_t threads = std::min<int64_t>(num_threads(), std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
  std::unique_lock<std::mutex> run(run_mutex_, std::try_to_lock);
  if (threads <= 1 || !run.owns_lock()) {
    fn(0, n, 0);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  job_ = &fn;
  n_ = n;
  chunk_ = chunk;
  const int64_t chunks = (n + chunk - 1) / chunk;  // <= threads <= kMaxThreads < 2^16
  error_ = nullptr;
  done_chunks_.store(0, std::memory_order_relaxed);
  uint32_t generation;
  {
    std::lock_guard<std::mutex> lock(mutex_);  // a worker about to sleep sees the new generation
    generation = uint32_t(generation_.load(std::memory_order_relaxed) + 1);
    claims_.store(claims_word(generation, chunks, 0), std::memory_order_release);  // the job, claimable
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  int64_t mine = 0;
  for (int64_t c; claim(generation, &c); ++mine) run_chunk(c, 0);
  // whoever completes the last chunk knows the job is done; when that is a worker, wait for it
  const bool finished_here = mine > 0 && done_chunks_.fetch_add(mine, std::memory_order_acq_rel) + mine == chunks;
  if (!finished_here)
    spin_then_wait(done_, [&] { return done_chunks_.load(std::memory_order_acquire) == chunks; });
  if (error_) std::rethrow_exception(error_);
}

namespace {
std::mutex g_pool_mutex;
std::shared_ptr<ThreadPool> g_pool;
int g_requested = 0;

int default_threads() {
  if (const char* env = std::getenv("CELER_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end == env || *end != '\0' || n < 1 || n > kMaxThreads)
      throw ValueError("CELER_NUM_THREADS must be an integer in [1, " + std::to_string(kMaxThreads) + "], got '" +
                       std::string(env) + "'");
    return int(n);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}
}  // namespace

std::shared_ptr<ThreadPool> thread_pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = std::make_shared<ThreadPool>(g_requested > 0 ? g_requested : default_threads());
  return g_pool;
}

void set_num_threads(int n) {
  require(n <= kMaxThreads, "num_threads must be at most " + std::to_string(kMaxThreads));
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  const int want = n > 0 ? n : default_threads();
  if (!g_pool || g_pool->num_threads() != want) g_pool = std::make_shared<ThreadPool>(want);  // may throw: nothing changed
  g_requested = n;
}

int get_num_threads() { return thread_pool()->num_threads(); }

}  // namespace celer
