// RuntimeImpl: everything a Runtime owns. Created by Runtime's constructor, which starts
// the workers; destroyed after shutdown() has joined them.
#pragma once

#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <spindle/options.hpp>
#include <spindle/time_limit.hpp>
#include <spindle/detail/task_header.hpp>
#include <spindle/internal/runtime_services.hpp>

#include "sched/idle.hpp"
#include "sched/spin_policy.hpp"
#include "core/stack_pool.hpp"
#include "core/task_state.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

class MonitorServer;
class StepWatch;
class TraceWriter;

class RuntimeImpl {
 public:
  explicit RuntimeImpl(Options o);
  ~RuntimeImpl();

  const Options opts;
  const std::shared_ptr<ReportSink> sink;
  StackPool stacks;
  Idle idle;
  std::vector<Worker*> workers;  // fixed after construction
  moodycamel::ConcurrentQueue<TaskHeader*> global;
  // Tasks that had already run and were moved out of a full run queue (a burst of wake-
  // ups, e.g. many timers due at once). Kept apart from `global` so that they do not wait
  // behind a backlog of tasks that have not started yet (100k spawned at once): workers
  // take from here first, and from `global` first one time in four so neither starves.
  moodycamel::ConcurrentQueue<TaskHeader*> spill;
  // An exact upper bound of the two queues' lengths together: moodycamel's size_approx()
  // is only a hint, and a parking worker must not miss work. Incremented (seq_cst) after
  // each enqueue, decremented after each dequeue.
  std::atomic<int64_t> global_len{0};
  void push_global(TaskHeader* const* ts, std::size_t n) noexcept;
  void push_spill(TaskHeader* const* ts, std::size_t n) noexcept;
  // Whether idle searchers spin, and how (spin_policy.hpp).
  SpinPolicy spin;

  std::atomic<bool> closing{false};   // shutdown began
  std::atomic<bool> stopping{false};  // workers must exit their loops
  // A parked worker is the I/O watcher: it wakes every Worker::kIoStealPark to take the
  // events of loops that are not parked. One at a time, so that idle workers of a big
  // runtime do not all wake a thousand times a second.
  std::atomic<bool> io_watcher{false};
  std::atomic<bool> closed{false};  // shutdown finished
  // The loops have stopped and their timers were released (release_timers): a timer
  // armed from outside after this is released by its arming thread. seq_cst: see
  // arm_callback (timers.cpp).
  std::atomic<bool> timers_closed{false};
  // Foreign threads (not this runtime's workers) between their look at `closing` and
  // the end of their queue push: submits, and wake-ups of started tasks. Shutdown waits
  // for it to be 0 before it drains the queues for the last time (after the workers are
  // joined) and before it returns, so that no task lands in a queue nobody reads and no
  // thread still touches the runtime once it may be destroyed. seq_cst increment against
  // shutdown's seq_cst store of `closing` (Dekker), release decrement (the push is then
  // visible to the drain).
  std::atomic<int64_t> foreign_inflight{0};
  std::atomic<uint64_t> foreign_spawned{0};
  std::atomic<uint64_t> foreign_ended{0};
  std::atomic<uint64_t> foreign_cancelled{0};  // of foreign_ended (metrics)
  std::atomic<uint64_t> abandoned_fibres{0};   // of foreign_ended: fibres left by shutdown (step 6)
  std::atomic<uint64_t> stacks_peak{0};        // the fibre count's peak seen by metrics()
  const int64_t start_ns;                      // when the runtime started (metrics' uptime)
  std::unique_ptr<MonitorServer> monitor;      // the console (Options::monitor), if any
  std::unique_ptr<StepWatch> step_watch;       // slow-step reports (Options::debug), if on
  // The execution trace being recorded, if any (trace_recorder.hpp): start, stop and
  // the foreign threads' events hold trace_mu.
  std::mutex trace_mu;
  std::unique_ptr<TraceWriter> tracer;  // guarded by trace_mu
  std::string trace_path;               // guarded by trace_mu
  // The blocking pool (runtime_blocking_pool): made on first use by the executors module,
  // released by shutdown once the workers are joined (step 5), so that no later call
  // makes another.
  std::mutex blocking_mu;
  std::shared_ptr<BlockingPool> blocking;  // guarded by blocking_mu
  bool blocking_released = false;          // guarded by blocking_mu
  BlockingPoolStats blocking_stats() noexcept;
  void release_blocking_pool() noexcept;

  void start();
  void shutdown(TimeLimit grace);
  // spindle::run: loop 0 gets no thread at start(); the thread that called run() runs it
  // until the main task ends (host_first_loop), then start_first_loop() gives it one for
  // the rest (the shutdown). Set before start(); `first_loop_waiting`: loop 0 still has
  // no thread. Both touched only by the thread that made the runtime.
  bool host_first = false;
  bool first_loop_waiting = false;
  void start_first_loop();
  /// After the loops stopped: cancels and releases every timer left in their heaps and
  /// timer inboxes (callbacks destroyed, never run), and makes later arms release
  /// themselves. Any thread, once the workers are joined.
  void release_timers() noexcept;
  void submit(TaskHeader* t, const TaskOptions* o);
  /// t has just been made QUEUED (woken, yielded, or new): put it where it can run.
  void make_ready(TaskHeader* t, bool wake) noexcept;
  /// make_ready for a caller that knows the calling thread's worker of this runtime
  /// (null: a foreign thread, which must be counted in foreign_inflight).
  void make_ready_from(Worker* cur, TaskHeader* t, bool wake) noexcept;
  void notify_work() noexcept;
  int64_t live_tasks() const noexcept;
  std::vector<TaskHeader*> snapshot_tasks();  // referenced; caller unrefs
  bool owns_thread() const noexcept;

 private:
  std::mutex shutdown_mu_;
  void submit_counted(TaskHeader* t, const TaskOptions* o, bool inside);
  void end_leftovers() noexcept;
};

/// Moves t (QUEUED, not started, never to start) to cancelled and releases the
/// scheduler's reference.
void finish_unstarted(TaskHeader* t, Status s, std::exception_ptr e) noexcept;

/// The calling fibre gives up its worker until woken (spurious returns are possible:
/// callers loop on their condition). `where` is recorded for Task::where().
void suspend_current(std::source_location where, SuspendKind kind = SuspendKind::wait) noexcept;

/// IDLE -> QUEUED (and scheduled), or RUNNING -> RUNNING|NOTIFIED. Any thread.
/// Makes a suspended task runnable. `lifo`: it runs next on this worker (a task woken by
/// the one running now, which is likely to want its data); timers pass false, so that
/// tasks whose timers fire in one batch run in deadline order.
void wake_task(TaskHeader* t, bool lifo = true) noexcept;
/// wake_task for a caller that knows t's runtime: does not read t's frame, which lives
/// on t's (likely cold) stack. Timers use it: a timer fires on its task's runtime.
void wake_task_in(RuntimeImpl* rt, TaskHeader* t, bool lifo) noexcept;

/// True if the calling fibre's task has a cancellation it should raise now.
bool cancel_pending(TaskHeader* t) noexcept;
/// Consumes the pending cancellation and returns the CancelledError to throw.
CancelledError take_cancel(TaskHeader* t);

// Worker's switch-path members that need the whole RuntimeImpl (inline: a yield runs
// them on every step).

inline void Worker::requeue_yielded(TaskHeader* t) noexcept {
  // Its state stays RUNNING[+N] (task_state.hpp, "a yield"), so neither this requeue nor
  // the run that resumes it is an atomic RMW; the run queue's own ordering hands its
  // saved context to whoever takes it. A pinned task (its home's pinned queue) and a
  // full ring take the out-of-line path, so that this one, which runs on every direct
  // switch of a yield, needs no stack frame.
  if (t->word.load(std::memory_order_relaxed) & kPinned) [[unlikely]]
    return requeue_yielded_slow(t);
  requeue_unpinned(t);
}

inline void Worker::requeue_unpinned(TaskHeader* t) noexcept {
  if (!ring.push(t)) [[unlikely]]
    return requeue_yielded_slow(t);
  if (!alone) rt->notify_work();
}

inline void Worker::after_suspend(TaskHeader* t) noexcept {
  if (yielding) {
    yielding = false;
    requeue_yielded(t);
  } else {
    publish_waited(t);
  }
}

inline TaskHeader* Worker::next_for_direct_switch() noexcept {
  // relaxed stopping: a hint; a loop told to stop finds out at its next turn.
  if (pending || rt->stopping.load(std::memory_order_relaxed)) [[unlikely]]
    return nullptr;
  TaskHeader* n = next_task();
  if (!n) [[unlikely]]
    count(empty_turns);
  return n;
}

}  // namespace spindle::detail
