#include "threadpool.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "error.h"

namespace celer {

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t, int)>* job;
    int64_t begin, end;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      begin = std::min(n_, index * chunk_);
      end = std::min(n_, begin + chunk_);
    }
    std::exception_ptr error;
    if (begin < end) {
      try {
        (*job)(begin, end, index);
      } catch (...) {
        error = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !error_) error_ = error;
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  parallel_for_threads(n, [&fn](int64_t begin, int64_t end, int) { fn(begin, end); }, grain);
}

void ThreadPool::parallel_for_threads(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                                      int64_t grain) {
  if (n <= 0) return;
  const int64_t threads = std::min<int64_t>(num_threads(), std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
  std::unique_lock<std::mutex> run(run_mutex_, std::try_to_lock);
  if (threads <= 1 || !run.owns_lock()) {
    fn(0, n, 0);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    n_ = n;
    chunk_ = chunk;
    pending_ = int(workers_.size());
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  std::exception_ptr error;
  try {
    fn(0, std::min(n, chunk), 0);
  } catch (...) {
    error = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
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
