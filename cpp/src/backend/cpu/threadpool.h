// A persistent pool of worker threads: no thread start-up per operation. parallel_for splits
// [0, n) into one contiguous chunk per thread; each thread, the calling one included, claims
// the next unclaimed chunk until none is left, so a worker the OS has descheduled (another
// process holds its core) leaves its chunk to a thread that runs: the call then takes longer,
// not a whole scheduler time slice longer per parallel section (a decode step runs dozens).
// Chunk boundaries do not depend on who runs a chunk, so results do not either.
// Workers spin for a short while after each job before sleeping, because waking a sleeping
// thread costs tens of microseconds on virtual machines; while spinning they yield the core
// now and then (sched_yield returns at once when nothing else wants it), so a descheduled
// worker or another process runs instead of the spin: beside busy processes it kept 0.56-0.58
// of the quiet decode speed against 0.44-0.46 for a pause-only spin and 0.14-0.21 for the
// static split before (benchmarks/pool_under_load.py, docs/design.md). CELER_POOL_WAIT=spin
// (pause only) is for measurements. Calls from several threads at once, or nested calls, run
// inline (serially) instead of waiting, so the pool can never deadlock.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace celer {

// A non-owning reference to a callable f(begin, end, thread): unlike std::function it never
// allocates, so parallel sections inside the decode loop allocate nothing.
class ChunkFn {
 public:
  template <class F>
  ChunkFn(F& f)  // NOLINT: implicit by design; f must outlive the call
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, int64_t b, int64_t e, int t) { (*static_cast<F*>(o))(b, e, t); }) {}
  void operator()(int64_t begin, int64_t end, int thread) const { call_(object_, begin, end, thread); }

 private:
  void* object_;
  void (*call_)(void*, int64_t, int64_t, int);
};

// The most threads a pool takes (set_num_threads, CELER_NUM_THREADS).
constexpr int kMaxThreads = 1024;

class ThreadPool {
 public:
  // Starts num_threads - 1 workers; ValueError (no thread left running) when the system
  // cannot start them all.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  int num_threads() const { return int(workers_.size()) + 1; }

  // fn(begin, end) over chunks of [0, n); chunks are at least `grain` long.
  template <class F>
  void parallel_for(int64_t n, F&& fn, int64_t grain = 1) {
    auto with_thread = [&fn](int64_t begin, int64_t end, int) { fn(begin, end); };
    run(n, ChunkFn(with_thread), grain);
  }
  // The same, also telling each chunk which thread runs it (0 <= thread < num_threads()), so
  // callers can give each thread its own preallocated scratch. A thread may run several
  // chunks (one after the other); which thread runs which chunk varies from call to call.
  template <class F>
  void parallel_for_threads(int64_t n, F&& fn, int64_t grain = 1) {
    run(n, ChunkFn(fn), grain);
  }

 private:
  void run(int64_t n, ChunkFn fn, int64_t grain);
  void worker_loop(int index);
  // Claims the next chunk of the job of generation `generation`; false when that job has no
  // chunk left (or is over).
  bool claim(uint32_t generation, int64_t* chunk);
  // Runs chunk `c` of the current job on thread `index`, then counts it done.
  void run_chunk(int64_t c, int index);
  void stop_workers();  // wakes, ends and joins every worker
  // Waits until `done()` holds: spins for kSpinNs, then sleeps on `cv`.
  template <class Pred>
  void spin_then_wait(std::condition_variable& cv, Pred done);

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel_for at a time
  std::mutex mutex_;      // guards sleeping on the condition variables
  std::condition_variable wake_, done_;
  const ChunkFn* job_ = nullptr;
  int64_t n_ = 0, chunk_ = 0;
  std::atomic<uint64_t> generation_{0};  // bumped (release) once job_, n_, chunk_ are set
  // The claims of the current job in one word: generation (32 bits) | chunks (16) | next
  // chunk (16). One compare-and-swap claims a chunk and checks that the job is still the
  // one the claimer read, so a late worker never runs a chunk of a job it did not see.
  std::atomic<uint64_t> claims_{0};
  std::atomic<int64_t> done_chunks_{0};  // chunks of the current job finished
  bool yield_while_spinning_ = true;     // CELER_POOL_WAIT=spin: false
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // first exception thrown by a worker's chunk (under mutex_)
};

// The process-wide pool. Its size: set_num_threads(n), else CELER_NUM_THREADS (an integer in
// [1, kMaxThreads], else ValueError), else the number of CPUs this process may run on. Callers hold the shared_ptr for the duration of
// their work, so set_num_threads from another thread never destroys a pool in use.
std::shared_ptr<ThreadPool> thread_pool();
void set_num_threads(int n);  // n <= 0: back to the default
int get_num_threads();

}  // namespace celer
