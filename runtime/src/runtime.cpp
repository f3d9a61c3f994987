// RuntimeImpl: start-up, submitting tasks, making them ready, and the shutdown sequence.
#include "runtime_impl.hpp"

#include <spindle/runtime.hpp>

#include <signal.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>

#include "frame.hpp"
#include "monitor.hpp"
#include "overflow_guard.hpp"
#include "step_watch.hpp"

namespace spindle::detail {

RuntimeImpl::RuntimeImpl(Options o)
    : opts(std::move(o)),
      sink(std::make_shared<ReportSink>()),
      stacks(opts.stack_size),
      idle(opts.workers ? opts.workers : std::max(1u, std::thread::hardware_concurrency())),
      spin(std::chrono::microseconds(50)),
      start_ns(monotonic_ns()) {
  sink->fn = opts.report;
  sink->rt = this;
}

RuntimeImpl::~RuntimeImpl() {
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
  for (Worker* w : workers) w->thread = std::thread([w] { w->main(); });
  if (opts.debug) {
    step_watch = std::make_unique<StepWatch>(this, opts.slow_step);
    step_watch->start();
  }
  if (monitor) monitor->start();
}

bool RuntimeImpl::owns_thread() const noexcept {
  Worker* w = current_worker();
  return w && w->rt == this;
}

void RuntimeImpl::submit(TaskHeader* t, const TaskOptions* o) {
  const bool inside = owns_thread();
  // From outside, a closing runtime takes nothing new. From inside, tasks that are
  // cleaning up may still spawn helpers (asyncio allows it until the loop closes).
  if (closed.load(std::memory_order_acquire) || (!inside && closing.load(std::memory_order_acquire))) {
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
      t->lock();
      try {
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
        t->unlock();
        t->unref();
        throw;
      }
      t->unlock();
    }
  }
  // relaxed: the queue push below publishes the task to the worker that runs it. A
  // handle holder may call cancel() concurrently: its wake_task sees either "not
  // started" (0) or QUEUED, and does nothing either way.
  t->word.fetch_or(uint16_t(bits), std::memory_order_relaxed);
  t->sched.store(kQueued, std::memory_order_relaxed);
  if (Worker* w = inside ? current_worker() : nullptr) Worker::bump(w->spawned);
  else foreign_spawned.fetch_add(1, std::memory_order_relaxed);
  make_ready(t, false);
}

void RuntimeImpl::make_ready(TaskHeader* t, bool wake) noexcept {
  Worker* cur = current_worker();
  if (cur && cur->rt != this) cur = nullptr;
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

void RuntimeImpl::shutdown(std::chrono::milliseconds grace) {
  if (owns_thread()) throw RuntimeError("Runtime::shutdown called from one of its own tasks");
  std::lock_guard lk(shutdown_mu_);
  if (closed.load(std::memory_order_acquire)) return;
  // A grace too large for the clock (milliseconds::max()) waits without a deadline.
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
  if (!wait_until_idle(deadline_after(saturating_ns(grace)))) {
    // 4. Report the ones that would not end, and make their cancellation sticky: every
    //    wait they make from now on is cancelled again. Give them one more grace period.
    for (TaskHeader* t : snapshot_tasks()) {
      sink->report({Report::Kind::task_would_not_end, task_name(t),
                    "task did not end within the shutdown grace period (suspended in " + task_where(t) + ")", nullptr});
      t->word.fetch_or(kStickyCancel, std::memory_order_acq_rel);
      cancel_task(t, "runtime shutdown");
      t->unref();
    }
    if (!wait_until_idle(deadline_after(saturating_ns(grace)))) {
      sink->report({Report::Kind::task_would_not_end, "",
                    std::to_string(live_tasks()) + " task(s) still alive after shutdown; their fibres are leaked", nullptr});
    }
  }
  // 5. Stop and join the workers (the slow-step watchdog first: it reads them).
  if (step_watch) step_watch->stop();
  stopping.store(true, std::memory_order_seq_cst);
  idle.wake_all(workers);
  for (Worker* w : workers)
    if (w->thread.joinable()) w->thread.join();
  // Timers that never fired (callbacks armed from outside may still sit in an inbox the
  // stopped loop never drained): cancelled and released now, not leaked.
  release_timers();
  // 6. Tasks still queued but never started (spawned so late that no worker took them)
  //    end cancelled, so that nobody waiting on them hangs.
  cancel_unstarted_leftovers();
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

void RuntimeImpl::cancel_unstarted_leftovers() noexcept {
  auto drop = [&](TaskHeader* t) {
    if (!(t->sched.load(std::memory_order_acquire) & kStarted)) {
      finish_unstarted(t, Status::cancelled, nullptr);
      foreign_cancelled.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter
      foreign_ended.fetch_add(1, std::memory_order_relaxed);
    }
    // A started task left in a queue would not end; it was reported in step 4.
  };
  TaskHeader* t;
  for (auto* q : {&global, &spill}) {
    while (q->try_dequeue(t)) {
      global_len.fetch_sub(1, std::memory_order_relaxed);
      drop(t);
    }
  }
  for (Worker* w : workers) {
    if (w->lifo) drop(std::exchange(w->lifo, nullptr));
    while ((t = w->ring.pop())) drop(t);
    for (TaskHeader* p : w->pinned) drop(p);
    w->pinned.clear();
    w->inbox.drain_into(w->pinned);
    for (TaskHeader* p : w->pinned) drop(p);
    w->pinned.clear();
  }
}

}  // namespace spindle::detail

namespace spindle {

Runtime::Runtime(Options opts) : impl_(std::make_unique<detail::RuntimeImpl>(std::move(opts))) { impl_->start(); }

Runtime::~Runtime() {
  if (impl_) impl_->shutdown(std::chrono::seconds(5));
}

void Runtime::shutdown(std::chrono::milliseconds grace) { impl_->shutdown(grace); }

unsigned Runtime::workers() const noexcept { return static_cast<unsigned>(impl_->workers.size()); }

bool Runtime::closed() const noexcept { return impl_->closing.load(std::memory_order_acquire); }

}  // namespace spindle
