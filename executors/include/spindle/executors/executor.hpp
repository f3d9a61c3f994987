// The executor interface that run_in_executor accepts, BrokenExecutor, and
// run_in_executor itself (asyncio's loop.run_in_executor).
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#include <spindle/errors.hpp>
#include <spindle/future.hpp>

namespace spindle {

/// An executor cannot take work: it is shut down, or it dropped a job without running it
/// (concurrent.futures.BrokenExecutor).
class BrokenExecutor : public detail::ErrorOf<std::runtime_error> {
 public:
  using ErrorOf::ErrorOf;
};

/// What run_in_executor needs from an executor `e`:
///
///   e.submit(std::function<void()> job)
///
/// must either run `job` exactly once, on any thread and at any later time (or inline,
/// before returning), or throw (then the job must not run, and the throw reaches the
/// caller of run_in_executor unchanged). An executor that destroys a job without ever
/// running it fails that call with BrokenExecutor instead of leaving the caller waiting
/// forever. submit() may be called from a worker thread of a runtime, so it should not
/// block for long. ThreadPool models it; so does any user type with such a member.
template <class E>
concept Executor = requires(E& e, std::function<void()> job) {
  e.submit(std::move(job));
};

namespace detail {

// One call: the callable, its arguments, and the future the caller waits on. Shared by
// the caller and the std::function handed to the executor (so that move-only callables
// and arguments work with std::function's copyable requirement).
//
// Threads: run() is called once, on the executor's thread; the destructor runs on
// whichever thread drops the last copy of the job. `ran` is touched only by those two,
// which are ordered (the destructor follows the last use of the job).
template <class R, class F, class... A>
struct ExecutorJob {
  Future<R> fut;
  F fn;
  std::tuple<A...> args;
  bool ran = false;

  template <class FF, class... AA>
  explicit ExecutorJob(Future<R> f, FF&& ff, AA&&... aa)
      : fut(std::move(f)), fn(std::forward<FF>(ff)), args(std::forward<AA>(aa)...) {}
  ExecutorJob(const ExecutorJob&) = delete;
  ExecutorJob& operator=(const ExecutorJob&) = delete;

  void run() noexcept {
    ran = true;
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply(fn, std::move(args));
        fut.set_result();
      } else {
        fut.set_result(std::apply(fn, std::move(args)));
      }
    } catch (...) {
      // The future may already be done: the awaiting task was cancelled, which
      // cancelled the future (the wait was abandoned). The outcome is then dropped.
      try {
        fut.set_exception(std::current_exception());
      } catch (const InvalidStateError&) {
      }
    }
  }
  ~ExecutorJob() {
    if (ran) return;
    try {
      fut.set_exception(std::make_exception_ptr(BrokenExecutor("executor dropped a job without running it")));
    } catch (...) {
    }
  }
};

}  // namespace detail

/// loop.run_in_executor(executor, fn, *args): runs fn(args...) on `executor` and waits
/// for it; returns fn's value or rethrows its exception. fn and args are decay-copied
/// (moved when given as rvalues) into the job; move-only types work.
///
/// From a fibre only the calling fibre suspends: the loop keeps running other tasks.
/// From a thread outside any runtime the call blocks that thread.
///
/// Cancelling the awaiting task abandons the wait: CancelledError is raised at once in
/// the caller, but fn (already queued or running) still runs to completion on its
/// thread, and its outcome is discarded. Nothing can interrupt a running fn.
///
/// Throws whatever fn throws, whatever executor.submit throws (BrokenExecutor from a
/// shut-down ThreadPool), BrokenExecutor if the executor dropped the job, and
/// CancelledError as above. Any thread, any fibre.
template <Executor E, class F, class... Args>
requires std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>
auto run_in_executor(E& executor, F&& fn, Args&&... args)
    -> std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...> {
  using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
  using Job = detail::ExecutorJob<R, std::decay_t<F>, std::decay_t<Args>...>;
  Future<R> fut;
  {
    auto job = std::make_shared<Job>(fut, std::forward<F>(fn), std::forward<Args>(args)...);
    std::function<void()> wrapped = [job = std::move(job)] { job->run(); };
    try {
      executor.submit(std::move(wrapped));
    } catch (...) {
      // The job will not run; its destructor may already have failed the future with
      // BrokenExecutor. Either way the submit error is what the caller sees, and the
      // future's own outcome must not be reported as never retrieved.
      if (!fut.cancel()) {
        try {
          (void)fut.exception();
        } catch (...) {
        }
      }
      throw;
    }
  }
  return fut.get();
}

}  // namespace spindle
