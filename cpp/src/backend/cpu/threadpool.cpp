#include "backend/cpu/threadpool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

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
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

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
    int n = std::atoi(env);
    if (n > 0) return n;
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
  require(n <= 1024, "num_threads must be at most 1024");
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  g_requested = n;
  int want = n > 0 ? n : default_threads();
  if (!g_pool || g_pool->num_threads() != want) g_pool = std::make_shared<ThreadPool>(want);
}

int get_num_threads() { return thread_pool()->num_threads(); }

}  // namespace celer
