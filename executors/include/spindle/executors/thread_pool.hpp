// spindle::ThreadPool (concurrent.futures.ThreadPoolExecutor) and spindle::to_thread
// (asyncio.to_thread): run blocking code on plain threads while the event loops go on.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include <spindle/executors/executor.hpp>
#include <spindle/time_limit.hpp>

namespace spindle {

namespace detail {
struct PoolState;
}

/// Options of a ThreadPool.
struct ThreadPoolOptions {
  /// The most threads the pool runs at once; must be at least 1.
  unsigned max_workers = 1;
  /// An idle thread exits after waiting this long for work. std::nullopt: never (it
  /// stays until shutdown); zero or negative: as soon as it finds no job.
  TimeLimit keep_alive = std::chrono::milliseconds(10'000);
  /// When the queue runs dry, one thread at a time polls this long for the next job
  /// before it sleeps: jobs submitted one after another (a task calling to_thread in a
  /// loop) then start without a thread wake-up. 0 turns it off; must not be negative.
  std::chrono::microseconds spin{50};
};

/// A blocking thread pool: threads start on demand (one per submitted job that no idle
/// thread can take) up to max_workers; when all are busy, jobs wait in a FIFO queue
/// (started in submission order); a thread that has been idle for keep_alive exits.
///
/// Jobs are plain std::function<void()>; one that throws is a bug of the job (it would
/// escape a thread): the pool catches it and calls std::terminate, as std::thread does.
/// run_in_executor and to_thread wrap their callables so nothing escapes.
///
/// Thread rules: every member may be called from any thread (pool threads, runtime
/// workers, foreign threads), except that the destructor and shutdown(true) block the
/// calling thread until the threads are joined: do not call them from a fibre whose loop
/// must keep running (use shutdown(false) there, or a to_thread call).
class ThreadPool {
 public:
  /// Throws std::invalid_argument if max_workers is 0 (or spin negative).
  explicit ThreadPool(unsigned max_workers, TimeLimit keep_alive = ThreadPoolOptions{}.keep_alive);
  explicit ThreadPool(ThreadPoolOptions opts);
  /// shutdown(true).
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Queues job; it runs on a pool thread, in FIFO order with the other queued jobs.
  /// Starts a new thread if no idle thread is free and fewer than max_workers run.
  /// Throws BrokenExecutor after shutdown(), std::system_error if no thread could be
  /// started and none is running (the job is then not queued).
  void submit(std::function<void()> job);

  /// Stops taking work: later submit() calls throw BrokenExecutor. Jobs already queued
  /// still run. With wait, blocks until every queued job has run and every thread has
  /// exited (joined); without, the threads finish on their own (detached). Idempotent.
  /// Called from one of the pool's own threads, that thread is detached, not joined.
  void shutdown(bool wait = true);
  /// shutdown(true), but waits at most `timeout` for the queued jobs to run and the
  /// threads to exit (asyncio's shutdown_default_executor(timeout)). Returns true if
  /// they all did (they are joined); false if some job was still running at the
  /// timeout (every thread is then detached: each ends after its job). std::nullopt
  /// waits as shutdown(true) does; zero or negative only looks whether they are done.
  bool shutdown_for(TimeLimit timeout);

  /// Threads alive now (running a job or idle); never more than max_workers().
  std::size_t threads() const;
  /// Threads running a job now.
  std::size_t busy() const;
  /// Jobs queued and not started.
  std::size_t queued() const;
  unsigned max_workers() const noexcept;

 private:
  std::shared_ptr<detail::PoolState> s_;
};

namespace detail {
/// The blocking pool of the calling fibre's runtime (see to_thread); nullptr outside a
/// runtime. Any thread.
std::shared_ptr<ThreadPool> blocking_pool();

struct ReportSink;
/// While the calling fibre's runtime records an execution trace (Runtime::start_trace):
/// what a pool job needs to record itself in it (a runtime's report sink, through which
/// the trace reaches its runtime); null otherwise, or outside a runtime. Any thread.
std::shared_ptr<ReportSink> job_trace_sink();
/// Records a pool job (`what`: a string literal) on the calling thread's track, from
/// its construction to its destruction. A null sink records nothing.
class JobTraceScope {
 public:
  JobTraceScope(std::shared_ptr<ReportSink> sink, const char* what) noexcept;
  ~JobTraceScope();
  JobTraceScope(const JobTraceScope&) = delete;
  JobTraceScope& operator=(const JobTraceScope&) = delete;

 private:
  std::shared_ptr<ReportSink> sink_;
  const char* what_;
};
}  // namespace detail

/// asyncio.to_thread(fn, *args): runs fn(args...) on the runtime's blocking pool and
/// returns its value or rethrows its exception. Only the calling fibre suspends; its loop
/// keeps running other tasks meanwhile.
///
/// The blocking pool: one ThreadPool per runtime, made on the first to_thread call,
/// bounded by Options::blocking_threads, with a 10 s keep-alive. When the runtime shuts
/// down (once its worker threads have exited), the pool is shut down too: jobs already
/// queued still run, and the shutdown waits up to 5 s for them and joins the pool's
/// threads; a job still running after that is left to finish on its detached thread and
/// reported (Report::Kind::task_would_not_end, task name "to_thread").
///
/// Cancelling the calling task abandons the wait (CancelledError at once); fn still runs
/// to completion on its pool thread and its outcome is dropped.
///
/// Called from a thread outside any runtime, fn runs inline on the calling thread (which
/// blocks, as it would waiting on a pool thread), with the same result and exceptions.
///
/// Throws what fn throws, CancelledError, std::system_error if no pool thread could be
/// started.
template <class F, class... Args>
requires std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>
auto to_thread(F&& fn, Args&&... args) -> std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...> {
  const std::shared_ptr<ThreadPool> pool = detail::blocking_pool();
  if (!pool) {
    // Outside a runtime: run inline, on decayed copies, as a pool thread would.
    auto f = std::decay_t<F>(std::forward<F>(fn));
    return std::invoke(std::move(f), std::decay_t<Args>(std::forward<Args>(args))...);
  }
  if (std::shared_ptr<detail::ReportSink> sink = detail::job_trace_sink()) {
    // Tracing: the job is recorded on its pool thread's track.
    return run_in_executor(
        *pool,
        [sink = std::move(sink), f = std::decay_t<F>(std::forward<F>(fn))](auto&&... a) mutable -> decltype(auto) {
          detail::JobTraceScope scope(sink, "to_thread");
          return std::invoke(std::move(f), std::forward<decltype(a)>(a)...);
        },
        std::forward<Args>(args)...);
  }
  return run_in_executor(*pool, std::forward<F>(fn), std::forward<Args>(args)...);
}

}  // namespace spindle
