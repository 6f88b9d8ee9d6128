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
    if ((i & 255) == 255 && steady_ns() - start > kSpinNs) {
      std::unique_lock<std::mutex> lock(mutex_);
      cv.wait(lock, done);
      return;
    }
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    spin_then_wait(wake_, [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; });
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    const int64_t begin = std::min(n_, index * chunk_), end = std::min(n_, begin + chunk_);
    if (begin < end) {
      try {
        (*job_)(begin, end, index);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // pairs with a sleeping caller's wait
      done_.notify_one();
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
  error_ = nullptr;
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);  // a worker about to sleep sees the new generation
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  std::exception_ptr error;
  try {
    fn(0, std::min(n, chunk), 0);
  } catch (...) {
    error = std::current_exception();
  }
  spin_then_wait(done_, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  if (!error) error = error_;
  if (error) std::rethrow_exception(error);
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
