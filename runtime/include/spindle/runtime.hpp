// spindle::Runtime — the worker threads and their event loops — and the free functions
// that reach the running one: run, spawn (task.hpp), yield, current_task, all_tasks.
// Also the runtime module's one include: #include <spindle/runtime.hpp> brings every
// public header of runtime/ (tasks, futures, waiting, timers, TaskGroup, JobScheduler,
// Generator, the monitor); <spindle/spindle.hpp> brings every module.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <iosfwd>
#include <memory>
#include <string>
#include <source_location>
#include <type_traits>
#include <utility>
#include <vector>

#include <spindle/errors.hpp>
#include <spindle/future.hpp>
#include <spindle/generator.hpp>
#include <spindle/job_scheduler.hpp>
#include <spindle/metrics.hpp>
#include <spindle/monitor.hpp>
#include <spindle/options.hpp>
#include <spindle/result.hpp>
#include <spindle/task.hpp>
#include <spindle/task_group.hpp>
#include <spindle/time_limit.hpp>
#include <spindle/timers.hpp>
#include <spindle/waiting.hpp>

namespace spindle {

namespace detail {
struct HostFirstLoop {};  // Runtime's constructor for run(): loop 0 waits for the caller
// run(): the calling thread runs loop 0 until the task `main` has ended (at once if it
// has), then the loop gets a thread of its own for the shutdown. From inside a fibre
// (run() nested in a task) it only starts that thread.
void host_first_loop(RuntimeImpl* rt, FutureCore* main);
}  // namespace detail

/// A set of worker threads, each running one event loop, that run tasks (fibres) and
/// steal them from each other. All of spindle's process-wide state lives in a Runtime:
/// several may exist in one process, side by side or one after another.
///
/// Thread rules: every member may be called from any thread, inside the runtime or not,
/// except shutdown() and the destructor, which must not be called from one of this
/// runtime's own tasks.
class Runtime {
 public:
  explicit Runtime(Options opts = {});
  /// For run(): as Runtime(opts), but loop 0 gets no thread until detail::host_first_loop
  /// has run it on the caller's (or shutdown starts one).
  Runtime(Options opts, detail::HostFirstLoop);
  /// Shuts down (as shutdown() with the default grace) if not done yet.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// Starts fn(args...) as a task on this runtime (asyncio.run_coroutine_threadsafe).
  /// From a foreign thread the task goes to the global queue. Throws RuntimeError
  /// once the runtime is shut down.
  template <class F, class... Args>
  requires Spawnable<F, Args...>
  auto spawn(F&& fn, Args&&... args) {
    return detail::spawn_on(impl_.get(), nullptr, std::forward<F>(fn), std::forward<Args>(args)...);
  }
  /// The same with a name, a stack size or pinning (TaskOptions).
  template <class F, class... Args>
  requires Spawnable<F, Args...>
  auto spawn(const TaskOptions& opts, F&& fn, Args&&... args) {
    return detail::spawn_on(impl_.get(), &opts, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// loop.call_soon_threadsafe(cb): runs cb() in a new task of this runtime. Any thread.
  template <class F>
  Task<> call_soon(F&& cb) {
    return spawn(TaskOptions{.name = "call_soon"}, [cb = std::forward<F>(cb)]() mutable { cb(); });
  }
  /// Runs cb() in a new task once d has passed (a zero or negative d: soon; a d too large
  /// for the clock: never, until cancelled). Any thread; from a foreign thread the timer
  /// lives on loop 0, which is woken if it is parked. Throws RuntimeError from outside
  /// the runtime once shutdown has begun. A timer that has not fired when the loops stop
  /// is cancelled (its callback destroyed) by shutdown.
  template <class Rep, class Period, class F>
  TimerHandle call_later(std::chrono::duration<Rep, Period> d, F&& cb) {
    const int64_t deadline = detail::deadline_after(detail::saturating_ns(d));
    return TimerHandle(detail::arm_callback(impl_.get(), deadline, std::function<void()>(std::forward<F>(cb))));
  }

  /// Runs fn as a task and waits for it (loop.run_until_complete): blocks the calling
  /// thread, returns fn's value or rethrows its exception.
  template <class F>
  requires Spawnable<F>
  auto block_on(F&& fn) { return spawn(TaskOptions{.name = "main"}, std::forward<F>(fn)).get(); }

  /// Graceful shutdown, in order: (1) refuse new spawns from outside; (2) cancel every
  /// live task; (3) wait up to `grace` for them to end; (4) report each task that would
  /// not end (Report::task_would_not_end), cancel it again at every wait for one more
  /// `grace`, then abandon what is still alive (its waits suspend for good); (5) stop and
  /// join the worker threads; (6) end every task left cancelled: never-started ones
  /// and abandoned ones (whose fibres and stacks are leaked, never unwound). When it
  /// returns, every handle of this runtime's tasks is done: a spawn racing it from
  /// another thread either throws RuntimeError or gives a task that ran or ended
  /// cancelled. Handles stay usable after the Runtime is destroyed. A task that never
  /// suspends cannot be stopped: shutdown then waits for it for ever. Idempotent.
  /// `grace` is a TimeLimit: std::nullopt waits in (3) until every task has ended, as
  /// asyncio.run does (nothing is then reported nor abandoned); zero or negative looks
  /// once in (3) and (4) and moves on.
  void shutdown(TimeLimit grace = std::chrono::seconds(5));

  /// Number of worker threads (event loops).
  unsigned workers() const noexcept;
  /// True once shutdown has begun.
  bool closed() const noexcept;

  /// A snapshot of the scheduler's counters (metrics.hpp). Any thread; takes no lock
  /// the loops use, and costs them nothing while nobody asks.
  Metrics metrics() const;
  /// Writes every live task (monitor.hpp: task_infos) as a table, with the call stack of
  /// each suspended one. Any thread; blocks (or suspends) briefly while the loops answer.
  void dump_tasks(std::ostream& os) const;

  /// Starts recording an execution trace into the file at `path` (created or
  /// truncated), in Chrome's trace event format (JSON): open it in Perfetto
  /// (ui.perfetto.dev, "Open trace file") or chrome://tracing, or summarise it with
  /// scripts/trace_report.py. One track per loop: each task step is a slice named after
  /// the task (how it ended in its args: the kind of wait and file:line, or that the task
  /// returned); wake-ups are arrows from the waker (a task, a timer, an fd, a foreign
  /// thread) to the woken task's next step; parks are slices with their reason (no work,
  /// timer, fd); steals (from which loop, how many), spawns, reactor polls and timers
  /// fired are instants; blocking-pool and process-pool jobs are slices on their threads'
  /// tracks; a step longer than Options::slow_step is marked "slow step".
  /// Each loop records into a fixed ring of its own without locks; a writer thread
  /// drains the rings every few milliseconds, so a loop never waits on the disk and the
  /// memory taken is fixed (8 MiB per loop). Events that find a ring full are dropped and
  /// their count is written in the trace's "otherData" ("dropped_events").
  /// Any thread. Throws RuntimeError if a trace is being recorded already, if the
  /// runtime is shut down, if `path` cannot be opened for writing (the message names it
  /// and the reason), or if this build of spindle has tracing compiled out
  /// (meson -Dtrace=false).
  void start_trace(const std::string& path);
  /// Stops the trace and finishes its file: a complete JSON document (a step still
  /// running is closed at the stop). Shutdown stops it too, once the loops have stopped.
  /// Nothing if no trace is being recorded. Any thread.
  /// Throws std::system_error if the trace could not be written (disk full, I/O error):
  /// code() is the errno of the first write that failed, what() names the path; the
  /// trace is stopped all the same and its file is incomplete. When shutdown finishes
  /// the trace, the same error goes to Options::report (Report::Kind::trace_failed, with
  /// the std::system_error as its `error`).
  void stop_trace();

  detail::RuntimeImpl* impl() const noexcept { return impl_.get(); }

 private:
  std::unique_ptr<detail::RuntimeImpl> impl_;
};

/// asyncio.run: makes a runtime with `opts`, runs fn as its main task, shuts the runtime
/// down (cancelling and awaiting what the main task left behind) and returns fn's value
/// or rethrows its exception. Call from a thread outside any runtime. That thread runs
/// loop 0 while fn's task runs (as asyncio.run runs its loop), so it runs tasks and may
/// be the one a task's thread-local state lives on; once fn's task has ended, loop 0
/// goes on, for the shutdown, on a thread of its own.
template <class F>
requires Spawnable<F>
auto run(F&& fn, Options opts = {}) {
  // The calling thread runs loop 0 until fn's task ends, instead of sleeping beside the
  // loops: one thread fewer, and with one worker the process has one thread while it
  // serves (the kernel then looks fds up without taking a reference to each file).
  Runtime rt(std::move(opts), detail::HostFirstLoop{});
  auto main = rt.spawn(TaskOptions{.name = "main"}, std::forward<F>(fn));
  detail::host_first_loop(rt.impl(), detail::checked_core(main));
  return main.get();
}

/// asyncio.sleep(0): lets the other ready tasks run, then continues (possibly on another
/// worker). A pending cancellation is raised here. Outside a runtime: std::this_thread::yield.
void yield(std::source_location where = std::source_location::current());

/// The task running the calling fibre (a type-erased handle: result() is not usable
/// through it), or an empty handle outside a task.
Task<> current_task();

/// Every live task of the calling fibre's runtime (or of `rt`): running, suspended, and
/// queued (started or not), the caller included (asyncio.all_tasks). The list is taken
/// as monitor.hpp's task dumps are: from a fibre it may suspend briefly while the other
/// loops list their queues, and a foreign thread blocks as long.
std::vector<Task<>> all_tasks();
std::vector<Task<>> all_tasks(Runtime& rt);

/// True when called from a fibre of a spindle runtime.
bool in_runtime() noexcept;

}  // namespace spindle
