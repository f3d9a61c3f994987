// ThreadPool: a blocking thread pool with on-demand threads, a FIFO queue and keep-alive.
//
// Owns:       the job queue and the pool's std::threads, in a PoolState shared with every
//             pool thread (so a detached thread never outlives what it touches).
// Threads:    every field of PoolState is guarded by `mu`; the counters are plain.
//             `queued_hint` (an atomic copy of queue.size(), written under mu) is the
//             one field read without mu: by the spinning thread, as a hint only.
// Invariants: 1. live == threads.size() == idle + busy + spinning + (threads between
//                states, which hold mu while they change state), and live <= max.
//             2. A queued job is taken by the spinning thread or an idle thread (idle
//                counts threads waiting on cv, and only those), else by a new thread if
//                live < max, else by the first thread that finishes its job. So submit
//                starts a thread exactly when queue.size() > idle + spinning and
//                live < max, and wakes an idle one when queue.size() > spinning.
//             3. After `shut`, nobody touches `threads` or `exited` but shutdown(), which
//                takes them in the same critical section that sets `shut`.
//             4. At most one thread spins (spinning <= 1); a spinner re-checks the queue
//                under mu before it sleeps, so a job it was counted on for is never
//                left waiting (submit decides under mu, the spinner decides under mu).
//
// A thread's life: started by submit (handle in `threads`); loops taking jobs in FIFO
// order. When the queue is empty it first spins for up to `spin` (if no other thread
// spins, and spinning pays), polling queued_hint: jobs that come one after another (a
// fibre calling to_thread in a loop) are then taken without a sleep and a wake-up.
// Then it waits up to keep_alive for a job on cv. Then either
//   (a) it timed out: it moves its own handle from `threads` to `exited` (joined by the
//       next submit that starts a thread, or by shutdown) and returns; or
//   (b) the pool is shut and the queue empty: it returns; shutdown joins or detaches it.
//
// Spinning pays only when the next job comes within `spin`; when it does not (the
// submitter is slow to come back, or the CPUs are oversubscribed and the spin only
// steals time from the threads that would submit), it is pure waste. So `spin_pays`
// learns: a spin that times out clears it; a thread woken for a job sets it to whether
// the job came within `spin` of the queue running dry (a spin would have caught it).
//
// Shutdown sequence (shutdown(wait) or shutdown_for(timeout), any thread, idempotent):
//   1. under mu: set `shut` (submit now throws), take `threads` and `exited`, wake all;
//   2. threads drain the queue, then return (b);
//   3. with wait, join every taken thread but the caller's own; otherwise detach them.
//      shutdown_for waits (on exit_cv) until every thread but the caller's own has
//      returned, or the timeout: then it joins them all, else detaches them all.
#include <spindle/executors/thread_pool.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <spindle/detail/deadline.hpp>
#include <spindle/detail/spin.hpp>

namespace spindle {

namespace detail {

// cv.wait_for(lk, d, pred) for a TimeLimit (keep_alive, shutdown_for's timeout): none,
// or one too large for the clock (milliseconds::max()), waits without a deadline,
// instead of overflowing inside wait_for's now() + d; zero or negative checks pred once.
template <class Pred>
bool wait_at_most(std::condition_variable& cv, std::unique_lock<std::mutex>& lk, TimeLimit d, Pred pred) {
  const int64_t dl = deadline_of(d);
  if (dl == 0) {
    cv.wait(lk, pred);
    return true;
  }
  return cv.wait_until(lk, std::chrono::steady_clock::time_point(std::chrono::nanoseconds(dl)), pred);
}

struct PoolState {
  PoolState(unsigned m, TimeLimit ka, std::chrono::microseconds sp) : max(m), keep_alive(ka), spin(sp) {}
  const unsigned max;
  const TimeLimit keep_alive;
  const std::chrono::microseconds spin;

  std::mutex mu;
  std::condition_variable cv;               // idle threads wait here for a job or `shut`
  std::condition_variable exit_cv;          // shutdown_for waits here for threads to end
  std::deque<std::function<void()>> queue;  // FIFO
  std::list<std::thread> threads;           // handles of the live threads
  std::vector<std::thread> exited;          // handles of threads gone by keep-alive
  std::size_t live = 0;
  std::size_t idle = 0;
  std::size_t busy = 0;
  std::size_t spinning = 0;  // 0 or 1 (invariant 4)
  bool spin_pays = true;     // see "Spinning pays" above
  bool shut = false;
  // queue.size(), stored under mu after each change. relaxed: a hint for the spinner,
  // which takes mu (acquiring everything) before it touches the queue.
  std::atomic<std::size_t> queued_hint{0};
  // `shut`, for the spinner (a spin too large for the clock has no deadline and ends only
  // on a job or this). relaxed: a hint like queued_hint; the spinner then takes mu.
  std::atomic<bool> shut_hint{false};

  // Polls queued_hint for up to `spin`, without mu. True if a job (probably) came.
  bool spin_for_job() const noexcept;

  static void run(std::shared_ptr<PoolState> s, std::list<std::thread>::iterator self);
};

bool PoolState::spin_for_job() const noexcept {
  const int64_t deadline = deadline_after(saturating_ns(spin));  // 0: spin for ever (a huge spin)
  for (unsigned i = 1;; ++i) {
    if (queued_hint.load(std::memory_order_relaxed) != 0) return true;  // relaxed: see above
    if (shut_hint.load(std::memory_order_relaxed)) return true;         // look at `shut` under mu
    if ((i & 63) == 0 && deadline != 0 && monotonic_ns() > deadline) return false;
    cpu_relax();
  }
}

void PoolState::run(std::shared_ptr<PoolState> s, std::list<std::thread>::iterator self) {
  std::unique_lock lk(s->mu);
  bool spun = false;                            // spun since the last job: sleep next time the queue is empty
  std::chrono::steady_clock::time_point dry{};  // when the queue ran dry (spun or not)
  for (;;) {
    if (!s->queue.empty()) {
      std::function<void()> job = std::move(s->queue.front());
      s->queue.pop_front();
      s->queued_hint.store(s->queue.size(), std::memory_order_relaxed);
      ++s->busy;
      lk.unlock();
      // A job that throws would escape the thread: as std::thread does, terminate.
      [&]() noexcept { job(); }();
      job = nullptr;  // drop what it captured before taking the lock again
      lk.lock();
      --s->busy;
      spun = false;
      continue;
    }
    if (s->shut) {
      --s->live;  // (b): shutdown() holds our handle
      s->exit_cv.notify_all();
      return;
    }
    if (s->spin.count() == 0) {
      // No spinning: no clock to read either.
    } else if (!spun) {
      dry = std::chrono::steady_clock::now();
      if (s->spin_pays && s->spinning == 0) {
        ++s->spinning;
        lk.unlock();
        const bool came = s->spin_for_job();
        lk.lock();
        --s->spinning;
        if (!came) s->spin_pays = false;
        spun = true;
        continue;  // invariant 4: look at the queue (and `shut`) under mu again
      }
      spun = true;
    }
    ++s->idle;
    const bool woken = wait_at_most(s->cv, lk, s->keep_alive, [&] { return !s->queue.empty() || s->shut; });
    --s->idle;
    if (!woken) {
      // (a): idle for keep_alive, and not shut (checked by the predicate, under mu):
      // `threads` is still ours to edit (invariant 3).
      --s->live;
      s->exited.push_back(std::move(*self));
      s->threads.erase(self);
      return;
    }
    // Woken for a job: would a spin have caught it? (Learns for the next idle spell.)
    if (s->spin.count() > 0 && !s->queue.empty())
      s->spin_pays = std::chrono::steady_clock::now() - dry <= saturating_ns(s->spin);
  }
}

}  // namespace detail

namespace {
void join_all(std::vector<std::thread>& ts) {
  for (auto& t : ts) t.join();
  ts.clear();
}
}  // namespace

ThreadPool::ThreadPool(unsigned max_workers, TimeLimit keep_alive)
    : ThreadPool(ThreadPoolOptions{.max_workers = max_workers, .keep_alive = keep_alive}) {}

ThreadPool::ThreadPool(ThreadPoolOptions opts) {
  if (opts.max_workers == 0) throw std::invalid_argument("ThreadPool: max_workers must be at least 1");
  if (opts.spin.count() < 0) throw std::invalid_argument("ThreadPool: negative spin");
  s_ = std::make_shared<detail::PoolState>(opts.max_workers, opts.keep_alive, opts.spin);
}

ThreadPool::~ThreadPool() { shutdown(true); }

void ThreadPool::submit(std::function<void()> job) {
  if (!job) throw std::invalid_argument("ThreadPool::submit: empty job");
  std::vector<std::thread> gone;
  bool wake = false;
  {
    std::lock_guard lk(s_->mu);
    if (s_->shut) throw BrokenExecutor("ThreadPool::submit: the pool is shut down");
    s_->queue.push_back(std::move(job));
    s_->queued_hint.store(s_->queue.size(), std::memory_order_relaxed);  // relaxed: a hint
    if (s_->queue.size() > s_->idle + s_->spinning && s_->live < s_->max) {
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
          s_->queued_hint.store(s_->queue.size(), std::memory_order_relaxed);
          gone.swap(s_->exited);  // keep them for a later join (we hold none here)
          throw;
        }
        // Otherwise a running thread will get to it.
      }
    }
    // The spinning thread takes the first job without a wake-up (invariant 2). One
    // more wake-up than needed is harmless (the woken thread re-checks the queue).
    wake = s_->idle > 0 && s_->queue.size() > s_->spinning;
  }
  // Notified after unlocking, so the woken thread does not block at once on mu. An idle
  // thread cannot miss it: it checks the queue under mu before it waits.
  if (wake) s_->cv.notify_one();
  // Threads that left by keep-alive have returned (or are about to): joining is quick.
  join_all(gone);
}

void ThreadPool::shutdown(bool wait) {
  std::list<std::thread> mine;
  std::vector<std::thread> gone;
  {
    std::lock_guard lk(s_->mu);
    s_->shut = true;
    s_->shut_hint.store(true, std::memory_order_relaxed);
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

bool ThreadPool::shutdown_for(TimeLimit timeout) {
  std::list<std::thread> mine;
  std::vector<std::thread> gone;
  const auto me = std::this_thread::get_id();
  bool all = false;
  {
    std::unique_lock lk(s_->mu);
    s_->shut = true;
    s_->shut_hint.store(true, std::memory_order_relaxed);
    mine.swap(s_->threads);
    gone.swap(s_->exited);
    s_->cv.notify_all();
    // A pool thread calling this cannot wait for itself.
    std::size_t own = 0;
    for (auto& t : mine) own += t.get_id() == me;
    all = detail::wait_at_most(s_->exit_cv, lk, timeout, [&] { return s_->live <= own; });
  }
  for (auto& t : mine) {
    if (all && t.get_id() != me) {
      t.join();  // it has returned: at once
    } else {
      t.detach();
    }
  }
  join_all(gone);
  return all;
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
