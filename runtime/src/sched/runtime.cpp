// RuntimeImpl: start-up, submitting tasks, making them ready, and the shutdown sequence.
#include "sched/runtime_impl.hpp"

#include <spindle/runtime.hpp>
#include <spindle/detail/spin.hpp>
#include <spindle/detail/waiting_core.hpp>

#include <signal.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <system_error>
#include <unordered_set>

#include "core/fibre.hpp"
#include "core/frame.hpp"
#include "observe/monitor_server.hpp"
#include "core/overflow_guard.hpp"
#include "observe/step_watch.hpp"
#include "observe/trace_hooks.hpp"
#include "observe/trace_writer.hpp"
#include "core/task_state.hpp"

namespace spindle::detail {

RuntimeImpl::RuntimeImpl(Options o)
    : opts(std::move(o)),
      sink(std::make_shared<ReportSink>()),
      stacks(opts.stack_size),
      idle(opts.workers ? opts.workers : std::max(1u, std::thread::hardware_concurrency())),
      start_ns(monotonic_ns()) {
  sink->fn = opts.report;
  sink->rt = this;
}

RuntimeImpl::~RuntimeImpl() {
  trace_stop_reporting(this);  // a start that failed after the trace began
  {
    std::lock_guard lk(sink->mu);
    sink->rt = nullptr;
  }
  for (Worker* w : workers) delete w;
}

void RuntimeImpl::start() {
  if (opts.debug && opts.slow_step.count() <= 0)
    throw std::invalid_argument("Options::slow_step must be positive (it is " + std::to_string(opts.slow_step.count()) +
                                " ms) when Options::debug is on");
  install_overflow_handler();
  // The console's socket first: a bad address or a failed bind throws before any thread
  // runs. It is served once the workers run.
  if (!opts.monitor.empty()) monitor = std::make_unique<MonitorServer>(this, opts.monitor);
  const unsigned n = opts.workers ? opts.workers : std::max(1u, std::thread::hardware_concurrency());
  workers.reserve(n);
  for (unsigned i = 0; i < n; ++i) workers.push_back(new Worker(this, i));
  // The trace next: a path that cannot be opened throws before any thread runs.
  if (!opts.trace.empty()) trace_start(this, opts.trace);
  for (Worker* w : workers) {
    if (host_first && w->index == 0) {
      first_loop_waiting = true;  // run()'s caller runs it (host_first_loop)
      continue;
    }
    w->thread = std::thread([w] { w->main(); });
  }
  if (opts.debug) {
    step_watch = std::make_unique<StepWatch>(this, opts.slow_step);
    step_watch->start();
  }
  if (monitor) monitor->start();
}

void RuntimeImpl::start_first_loop() {
  if (!first_loop_waiting) return;
  Worker* w = workers[0];
  w->hosted = false;
  w->thread = std::thread([w] { w->main(); });
  first_loop_waiting = false;
}

namespace {
// Ends the hosting of loop 0 when run()'s main task ends: a done node on the main task,
// notified by its completer (any thread), after which the loop returns to run().
class HostRelease final : public Waiter {
 public:
  explicit HostRelease(Worker* w) noexcept : Waiter(CallbackTag{}), w_(w) {}

 private:
  void fire() noexcept override {
    Worker* w = w_;  // `this` may be gone once the store is seen
    // release: pairs with the loop's acquire load; the loop looks at the flag before
    // each task and after each park, and unpark() ends a park or makes the next return.
    w->host_release.store(true, std::memory_order_release);
    w->reactor.unpark();
  }
  Worker* w_;
};
}  // namespace

void host_first_loop(RuntimeImpl* rt, FutureCore* main) {
  // Inside a runtime's fibre (run() nested in a task), the caller's thread belongs to
  // that runtime's loop: loop 0 gets its thread, and main.get() waits as it always did.
  if (!rt->first_loop_waiting || current_worker() != nullptr) {
    rt->start_first_loop();
    return;
  }
  Worker* w = rt->workers[0];
  HostRelease release(w);
  bool linked = false;
  {
    std::lock_guard g(*main);
    if (!main->done()) {
      main->link_waiter(&release);
      linked = true;
    }
  }
  if (linked) {
    w->hosted = true;
    // A loop starts with the thread's exception globals empty (fibre.cpp): run() called
    // inside a catch handler gets its caught exception back afterwards.
    const ThreadEh eh = take_thread_eh();
    w->main();  // returns once `release` has fired (the main task has ended)
    put_thread_eh(eh);
    // Or for a stop, were this runtime shut down meanwhile (run() does that only after
    // we return): then take the node back, or wait out a completer firing it, before it
    // goes out of scope. acquire: as the loop's look.
    if (!w->host_release.load(std::memory_order_acquire) && !unlink_done_node(main, &release))
      while (!w->host_release.load(std::memory_order_acquire)) cpu_relax();
  }
  rt->start_first_loop();
}

bool RuntimeImpl::owns_thread() const noexcept {
  Worker* w = current_worker();
  return w && w->rt == this;
}

void RuntimeImpl::submit(TaskHeader* t, const TaskOptions* o) {
  if (owns_thread()) return submit_counted(t, o, true);
  // A foreign thread is counted from before its look at `closing` until its push is
  // done: either shutdown's last drain (after the workers are joined) waits for the push
  // and cancels the task, or this thread sees `closing` and throws. Without it a spawn
  // that passed the check could push after that drain: a handle that never ended.
  // seq_cst: Dekker with the seq_cst store of `closing` and shutdown's seq_cst load of
  // the count. Foreign spawns only: the hot path (a task spawning) is not touched.
  foreign_inflight.fetch_add(1, std::memory_order_seq_cst);
  struct Leave {
    std::atomic<int64_t>& n;
    // release: our push is visible to whoever then reads the count as 0.
    ~Leave() { n.fetch_sub(1, std::memory_order_release); }
  } leave{foreign_inflight};
  submit_counted(t, o, false);
}

void RuntimeImpl::submit_counted(TaskHeader* t, const TaskOptions* o, bool inside) {
  // From outside, a closing runtime takes nothing new. From inside, tasks that are
  // cleaning up may still spawn helpers (asyncio allows it until the loop closes).
  // seq_cst (foreign): see submit().
  if (closed.load(std::memory_order_acquire) || (!inside && closing.load(std::memory_order_seq_cst))) {
    t->unref();
    throw RuntimeError("spawn: the runtime is shut down");
  }
  uint32_t bits = 0;
  if (closing.load(std::memory_order_acquire)) bits |= kLateSpawn;
  if (o) {
    // -1 is "the spawning fibre's loop"; anything else must name a loop, pinned or not
    // (an index that is ignored today would silently mean something else tomorrow).
    if (o->loop != -1 && (o->loop < 0 || o->loop >= int(workers.size()))) {
      t->unref();
      throw std::invalid_argument("spawn: TaskOptions::loop " + std::to_string(o->loop) +
                                  " is not a loop index (there are " + std::to_string(workers.size()) +
                                  " loops: 0 to " + std::to_string(workers.size() - 1) + ", or -1 for the spawner's)");
    }
    const bool custom = o->stack_size != 0 && StackPool::rounded(o->stack_size) != stacks.default_size();
    if (!o->name.empty() || o->pinned || custom) {
      // The task may be shared already (a TaskGroup hands out its handle before it
      // submits), and cancel(msg) or set_name may have made `extra`: merge, under the lock.
      try {
        std::lock_guard g(*t);
        Extra& x = t->extra_locked();
        if (!o->name.empty()) x.name = o->name;
        if (custom) {
          x.stack_size = o->stack_size;
          bits |= kCustomStack;
        }
        if (o->pinned) {
          Worker* cur = current_worker();
          x.home = o->loop >= 0 ? workers[o->loop] : (inside ? cur : workers[0]);
          bits |= kPinned;
        }
      } catch (...) {
        t->unref();  // after g released the lock
        throw;
      }
    }
  }
  // relaxed: the queue push below publishes the task to the worker that runs it.
  t->word.fetch_or(uint16_t(bits), std::memory_order_relaxed);
  task_state::submit(t);
  Worker* const w = inside ? current_worker() : nullptr;
  if (w)
    Worker::bump(w->spawned);
  else
    foreign_spawned.fetch_add(1, std::memory_order_relaxed);
  if (trace_any()) [[unlikely]]
    trace_spawn(this, w, t);
  make_ready_from(w, t, false);  // a foreign caller is counted in foreign_inflight (submit)
}

void RuntimeImpl::make_ready(TaskHeader* t, bool wake) noexcept {
  Worker* cur = current_worker();
  if (cur && cur->rt == this) return make_ready_from(cur, t, wake);
  // A foreign thread waking a started task: counted until it is done with the runtime
  // (push and notify), so that shutdown does not return, and the runtime is not
  // destroyed, under it (see foreign_inflight). relaxed: the push that follows (a release
  // by the queue) carries the increment to the drain that takes the task; shutdown
  // waits for any task it marked while QUEUED to show up in a queue first.
  foreign_inflight.fetch_add(1, std::memory_order_relaxed);
  make_ready_from(nullptr, t, wake);
  foreign_inflight.fetch_sub(1, std::memory_order_release);  // release: as in submit()
}

void RuntimeImpl::make_ready_from(Worker* cur, TaskHeader* t, bool wake) noexcept {
  if (t->word.load(std::memory_order_relaxed) & kPinned) {
    Worker* home = t->extra()->home;  // set before the task was first queued; never changes
    if (cur == home) {
      home->push_local(t, wake);
    } else {
      for (;;) {
        try {
          home->inbox.push(t);
          break;
        } catch (...) {
          std::this_thread::yield();  // no memory for the inbox: retry, never drop the task
        }
      }
      idle.notify_worker(home);
    }
    return;
  }
  if (cur) {
    // Only work that others can steal is worth waking a parked worker for.
    if (cur->push_local(t, wake) && workers.size() > 1) notify_work();
  } else {
    push_global(&t, 1);
    notify_work();
  }
}

void RuntimeImpl::push_global(TaskHeader* const* ts, std::size_t n) noexcept {
  while (!global.enqueue_bulk(ts, n)) std::this_thread::yield();  // allocation failed: retry
  // seq_cst: part of the publish-then-fence protocol in idle.hpp.
  global_len.fetch_add(int64_t(n), std::memory_order_seq_cst);
}

void RuntimeImpl::push_spill(TaskHeader* const* ts, std::size_t n) noexcept {
  while (!spill.enqueue_bulk(ts, n)) std::this_thread::yield();  // allocation failed: retry
  // seq_cst: as in push_global (one count covers both queues).
  global_len.fetch_add(int64_t(n), std::memory_order_seq_cst);
}

void RuntimeImpl::notify_work() noexcept { idle.notify_work(workers); }

int64_t RuntimeImpl::live_tasks() const noexcept {
  // Read every `ended` before any `spawned`: a task is counted spawned before it can end,
  // so this never undercounts a task that is still alive.
  int64_t ended = int64_t(foreign_ended.load(std::memory_order_seq_cst));
  for (Worker* w : workers) ended += int64_t(w->ended.load(std::memory_order_seq_cst));
  int64_t spawned = int64_t(foreign_spawned.load(std::memory_order_seq_cst));
  for (Worker* w : workers) spawned += int64_t(w->spawned.load(std::memory_order_seq_cst));
  return spawned - ended;
}

std::vector<TaskHeader*> RuntimeImpl::snapshot_tasks() {
  std::vector<TaskHeader*> out;
  for (Worker* w : workers) w->registry.snapshot(out);
  return out;
}

void RuntimeImpl::shutdown(TimeLimit grace) {
  if (owns_thread()) throw RuntimeError("Runtime::shutdown called from one of its own tasks");
  std::lock_guard lk(shutdown_mu_);
  if (closed.load(std::memory_order_acquire)) return;
  // run() hosts loop 0 until its main task ends; if it never got there (its spawn
  // threw), the loop gets its thread now, so that the steps below can run its tasks.
  // A thread that cannot be made leaves them to the grace period's reports (step 4).
  try {
    start_first_loop();
  } catch (const std::system_error&) {
  }
  // No grace, or one too large for the clock (milliseconds::max()): no deadline.
  auto wait_until_idle = [&](int64_t deadline) {
    while (live_tasks() > 0 && (deadline == 0 || monotonic_ns() < deadline))
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    return live_tasks() <= 0;
  };

  // 1. Refuse new work from outside. seq_cst: pairs with the load in suspend_current, so
  //    a task either is in the snapshot below or sees `closing` when it registers.
  closing.store(true, std::memory_order_seq_cst);
  // 2. Cancel every live task. Those not started yet are cancelled when dequeued.
  for (TaskHeader* t : snapshot_tasks()) {
    cancel_task(t, "runtime shutdown");
    t->unref();
  }
  // 3. Wait for them to end.
  if (!wait_until_idle(deadline_of(grace))) {
    // 4. Report the ones that would not end, and make their cancellation sticky: every
    //    wait they make from now on is cancelled again. Give them one more grace period.
    for (TaskHeader* t : snapshot_tasks()) {
      const TaskWhere where = task_where(t);
      sink->report({Report::Kind::task_would_not_end, task_name(t),
                    std::string("task did not end within the shutdown grace period (") +
                        (where.state == TaskState::suspended ? "suspended in " : "") + to_string(where) + ")",
                    nullptr});
      t->word.fetch_or(kStickyCancel, std::memory_order_acq_rel);
      cancel_task(t, "runtime shutdown");
      t->unref();
    }
    if (!wait_until_idle(deadline_of(grace))) {
      sink->report({Report::Kind::task_would_not_end, "",
                    std::to_string(live_tasks()) + " task(s) still alive after shutdown; their fibres are leaked",
                    nullptr});
      // Abandon them: from now on a wait of theirs suspends instead of raising (and a
      // yield is not requeued), so one that catches CancelledError in a loop gives its
      // worker back at its next wait and the worker can be joined. Step 6 ends them.
      for (TaskHeader* t : snapshot_tasks()) {
        t->word.fetch_or(kAbandoned, std::memory_order_acq_rel);
        t->unref();
      }
    }
  }
  // 5. Stop and join the workers (the slow-step watchdog first: it reads them).
  if (step_watch) step_watch->stop();
  stopping.store(true, std::memory_order_seq_cst);
  idle.wake_all(workers);
  for (Worker* w : workers)
    if (w->thread.joinable()) w->thread.join();
  // The blocking pool goes once no task can call to_thread any more: its threads are
  // joined here (bounded: a job still blocked is reported and left on its thread).
  release_blocking_pool();
  // Timers that never fired (callbacks armed from outside may still sit in an inbox the
  // stopped loop never drained): cancelled and released now, not leaked.
  release_timers();
  // 6. Every task left ends: tasks still queued but never started (spawned so late that
  //    no worker took them, or by a foreign thread racing this shutdown) and the
  //    abandoned ones end cancelled, so that no handle waits for ever.
  end_leftovers();
  // The trace once every loop has stopped: it holds everything they did.
  trace_stop_reporting(this);
  closed.store(true, std::memory_order_release);
  // 7. The console closes last, so that a shutdown that hangs can still be looked at.
  if (monitor) monitor->stop();
}

void RuntimeImpl::release_timers() noexcept {
  // seq_cst store then fence, against the push, fence, load in arm_callback (a Dekker
  // pair): either the arming thread sees the flag and releases its own entry, or the
  // drain below sees the entry in the inbox. Never neither.
  timers_closed.store(true, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (Worker* w : workers) w->drop_timers();
}

void RuntimeImpl::end_leftovers() noexcept {
  // The workers are joined: no fibre runs. The tasks still registered are the abandoned
  // ones (step 4), each suspended for good. Mark them ENDED first: a wake-up from now on
  // does nothing (it never reads the frame or the runtime). One whose mark replaced
  // QUEUED is in a queue, or a foreign waker is about to push it: wait until it shows up.
  std::vector<TaskHeader*> abandoned = snapshot_tasks();
  std::unordered_set<TaskHeader*> on_the_way;
  for (TaskHeader* t : abandoned) {
    if (task_state::abandon(t) == task_state::Abandoned::was_queued) on_the_way.insert(t);
  }
  auto drain = [&](TaskHeader* t, bool& found) {
    if (!(t->sched.load(std::memory_order_acquire) & kStarted)) {
      finish_unstarted(t, Status::cancelled, nullptr);
      foreign_cancelled.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter
      foreign_ended.fetch_add(1, std::memory_order_relaxed);
    } else {
      found = on_the_way.erase(t) != 0 || found;  // abandoned: the queue's pointer is dropped
    }
  };
  for (;;) {
    // Read before draining: 0 means every foreign push that got past `closing` is done
    // (and later ones throw), so this drain sees them all. seq_cst: see submit().
    const bool quiet = foreign_inflight.load(std::memory_order_seq_cst) == 0;
    bool found = false;
    TaskHeader* t;
    for (auto* q : {&global, &spill}) {
      while (q->try_dequeue(t)) {
        global_len.fetch_sub(1, std::memory_order_relaxed);
        drain(t, found);
      }
    }
    for (Worker* w : workers) {
      if (w->lifo) drain(std::exchange(w->lifo, nullptr), found);
      if (w->pending) drain(std::exchange(w->pending, nullptr), found);
      while ((t = w->ring.pop())) drain(t, found);
      w->inbox.drain_into(w->pinned);
      for (TaskHeader* p : w->pinned) drain(p, found);
      w->pinned.clear();
    }
    // A waker whose task turned up just now counted itself before its push: look at
    // the count once more before trusting it.
    if (quiet && !found && on_the_way.empty()) break;
    std::this_thread::yield();
  }
  // Done callbacks of the tasks ended below are dropped and reported, not spawned.
  closed.store(true, std::memory_order_release);
  for (TaskHeader* t : abandoned) {
    // Its frame, and the Waiters it linked into futures and primitives that may outlive
    // the runtime, are on its stack: that stays mapped. The scheduler's reference is
    // kept too (those Waiters point at the task).
    if (TaskFrame* f = t->frame) {
      stacks.keep_mapped(f->stack);
      drop_wait_timer(f);  // its fibre never runs again; the loops' heaps are dropped
    }
    t->lock();
    if (t->status() == Status::pending) {
      try {
        t->extra_locked().cancel_message = "runtime shut down: the task would not end and was abandoned";
      } catch (...) {  // no memory for the message: cancelled without it
      }
      t->word.fetch_and(uint16_t(~kCancelReq), std::memory_order_relaxed);  // under the lock
      t->publish_and_unlock(Status::cancelled);
      // Counted ended (and cancelled) like a task ended here before its start, and its
      // fibre as ended too: its stack stays mapped but no task uses it any more, so
      // live_tasks and stacks_in_use read 0 after a shutdown that abandoned tasks.
      // seq_cst as every `ended` counter (live_tasks reads them before `spawned`).
      foreign_cancelled.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter
      foreign_ended.fetch_add(1, std::memory_order_seq_cst);
      abandoned_fibres.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter
    } else {
      t->unlock();
    }
    t->unref();  // the snapshot's reference
  }
}

}  // namespace spindle::detail

namespace spindle {

Runtime::Runtime(Options opts) : impl_(std::make_unique<detail::RuntimeImpl>(std::move(opts))) { impl_->start(); }

Runtime::Runtime(Options opts, detail::HostFirstLoop) : impl_(std::make_unique<detail::RuntimeImpl>(std::move(opts))) {
  impl_->host_first = true;
  impl_->start();
}

Runtime::~Runtime() {
  if (impl_) impl_->shutdown(std::chrono::seconds(5));
}

void Runtime::shutdown(TimeLimit grace) { impl_->shutdown(grace); }

unsigned Runtime::workers() const noexcept { return static_cast<unsigned>(impl_->workers.size()); }

bool Runtime::closed() const noexcept { return impl_->closing.load(std::memory_order_acquire); }

}  // namespace spindle
