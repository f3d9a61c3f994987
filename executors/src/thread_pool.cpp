// ThreadPool: a blocking thread pool with on-demand threads, a FIFO queue and keep-alive.
//
// Owns:       the job queue and the pool's std::threads, in a PoolState shared with every
//             pool thread (so a detached thread never outlives what it touches).
// Threads:    every field of PoolState is guarded by `mu`; the counters are plain.
// Invariants: 1. live == threads.size() == idle + busy + (threads between states, which
//                hold mu while they change state), and live <= max.
//             2. A queued job is taken by an idle thread (idle counts threads waiting on
//                cv, and only those), else by a new thread if live < max, else by the
//                first thread that finishes its job. So submit starts a thread exactly
//                when queue.size() > idle and live < max.
//             3. After `shut`, nobody touches `threads` or `exited` but shutdown(), which
//                takes them in the same critical section that sets `shut`.
//
// A thread's life: started by submit (handle in `threads`); loops taking jobs in FIFO
// order; waits up to keep_alive for a job when the queue is empty. Then either
//   (a) it timed out: it moves its own handle from `threads` to `exited` (joined by the
//       next submit that starts a thread, or by shutdown) and returns; or
//   (b) the pool is shut and the queue empty: it returns; shutdown joins or detaches it.
//
// Shutdown sequence (shutdown(wait), any thread, idempotent):
//   1. under mu: set `shut` (submit now throws), take `threads` and `exited`, wake all;
//   2. threads drain the queue, then return (b);
//   3. with wait, join every taken thread but the caller's own; otherwise detach them.
#include <spindle/executors/thread_pool.hpp>

#include <condition_variable>
#include <deque>
#include <exception>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace spindle {

namespace detail {

struct PoolState {
  PoolState(unsigned m, std::chrono::milliseconds ka) : max(m), keep_alive(ka) {}
  const unsigned max;
  const std::chrono::milliseconds keep_alive;

  std::mutex mu;
  std::condition_variable cv;                // idle threads wait here for a job or `shut`
  std::deque<std::function<void()>> queue;   // FIFO
  std::list<std::thread> threads;            // handles of the live threads
  std::vector<std::thread> exited;           // handles of threads gone by keep-alive
  std::size_t live = 0;
  std::size_t idle = 0;
  std::size_t busy = 0;
  bool shut = false;

  static void run(std::shared_ptr<PoolState> s, std::list<std::thread>::iterator self);
};

void PoolState::run(std::shared_ptr<PoolState> s, std::list<std::thread>::iterator self) {
  std::unique_lock lk(s->mu);
  for (;;) {
    if (!s->queue.empty()) {
      std::function<void()> job = std::move(s->queue.front());
      s->queue.pop_front();
      ++s->busy;
      lk.unlock();
      // A job that throws would escape the thread: as std::thread does, terminate.
      [&]() noexcept { job(); }();
      job = nullptr;  // drop what it captured before taking the lock again
      lk.lock();
      --s->busy;
      continue;
    }
    if (s->shut) {
      --s->live;  // (b): shutdown() holds our handle
      return;
    }
    ++s->idle;
    const bool woken = s->cv.wait_for(lk, s->keep_alive, [&] { return !s->queue.empty() || s->shut; });
    --s->idle;
    if (!woken) {
      // (a): idle for keep_alive, and not shut (checked by the predicate, under mu):
      // `threads` is still ours to edit (invariant 3).
      --s->live;
      s->exited.push_back(std::move(*self));
      s->threads.erase(self);
      return;
    }
  }
}

}  // namespace detail

namespace {
void join_all(std::vector<std::thread>& ts) {
  for (auto& t : ts) t.join();
  ts.clear();
}
}  // namespace

ThreadPool::ThreadPool(unsigned max_workers, std::chrono::milliseconds keep_alive)
    : ThreadPool(ThreadPoolOptions{.max_workers = max_workers, .keep_alive = keep_alive}) {}

ThreadPool::ThreadPool(ThreadPoolOptions opts) {
  if (opts.max_workers == 0) throw std::invalid_argument("ThreadPool: max_workers must be at least 1");
  if (opts.keep_alive.count() < 0) throw std::invalid_argument("ThreadPool: negative keep_alive");
  s_ = std::make_shared<detail::PoolState>(opts.max_workers, opts.keep_alive);
}

ThreadPool::~ThreadPool() { shutdown(true); }

void ThreadPool::submit(std::function<void()> job) {
  if (!job) throw std::invalid_argument("ThreadPool::submit: empty job");
  std::vector<std::thread> gone;
  {
    std::lock_guard lk(s_->mu);
    if (s_->shut) throw BrokenExecutor("ThreadPool::submit: the pool is shut down");
    s_->queue.push_back(std::move(job));
    if (s_->queue.size() > s_->idle && s_->live < s_->max) {
      gone.swap(s_->exited);
      auto it = s_->threads.emplace(s_->threads.end());
      try {
        // The new thread blocks on mu until we are done here, so `it` is filled first.
        *it = std::thread(&detail::PoolState::run, s_, it);
        ++s_->live;
      } catch (...) {
        s_->threads.erase(it);
        if (s_->live == 0) {
          // Nobody would ever run it: take it back and tell the caller.
          s_->queue.pop_back();
          gone.swap(s_->exited);  // keep them for a later join (we hold none here)
          throw;
        }
        // Otherwise a running thread will get to it.
      }
    }
    // One more wake-up than needed is harmless (the woken thread re-checks the queue).
    if (s_->idle > 0) s_->cv.notify_one();
  }
  // Threads that left by keep-alive have returned (or are about to): joining is quick.
  join_all(gone);
}

void ThreadPool::shutdown(bool wait) {
  std::list<std::thread> mine;
  std::vector<std::thread> gone;
  {
    std::lock_guard lk(s_->mu);
    s_->shut = true;
    mine.swap(s_->threads);
    gone.swap(s_->exited);
    s_->cv.notify_all();
  }
  const auto me = std::this_thread::get_id();
  for (auto& t : mine) {
    if (wait && t.get_id() != me) {
      t.join();
    } else {
      t.detach();
    }
  }
  join_all(gone);
}

std::size_t ThreadPool::threads() const {
  std::lock_guard lk(s_->mu);
  return s_->live;
}

std::size_t ThreadPool::busy() const {
  std::lock_guard lk(s_->mu);
  return s_->busy;
}

std::size_t ThreadPool::queued() const {
  std::lock_guard lk(s_->mu);
  return s_->queue.size();
}

unsigned ThreadPool::max_workers() const noexcept { return s_->max; }

}  // namespace spindle
