// FutureCore and Waiter: completing, waiting and cancelling, shared by tasks, futures and
// (later) every synchronisation primitive.
#include <spindle/detail/core.hpp>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <thread>

#include <spindle/detail/parked_waiter.hpp>
#include <spindle/detail/spin.hpp>
#include <spindle/detail/waiting_core.hpp>
#include <spindle/task.hpp>

#include "core/frame.hpp"
#include "sched/timer_heap.hpp"
#include "sched/runtime_impl.hpp"
#include "core/task_state.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

// The entry a timed wait of the running task t waits on (its last one's, reused, or a
// new one), and its release when the wait ends (timers.cpp; timer_heap.hpp).
TimerEntry* arm_wait_timer(TaskHeader* t, int64_t deadline_ns);
void end_wait_timer(TaskHeader* t, TimerEntry* e, int64_t deadline_ns) noexcept;

namespace {

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, const timespec* rel) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, rel, nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>* word) noexcept {
  // The waiter may already have returned (it saw the store before this call): waking an
  // address nobody waits on is harmless; the kernel does not touch the memory.
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

int64_t now_ns() noexcept { return monotonic_ns(); }

}  // namespace

// ---- FutureCore -------------------------------------------------------------------

void Backoff::yield_thread() noexcept { std::this_thread::yield(); }

void FutureCore::lock() noexcept {
  // acquire: pairs with the release in unlock(). Test first so waiting spinners only read.
  for (;;) {
    if (!(word.fetch_or(kLock, std::memory_order_acquire) & kLock)) return;
    while (word.load(std::memory_order_relaxed) & kLock) cpu_relax();
  }
}

Extra& FutureCore::extra_locked() {
  if (Extra* x = extra()) return *x;
  auto* x = new Extra();  // alignof(Extra) >= 8: bit 0 of its address is free for the tag
  x->waiters = aux_;      // the list moves into the Extra
  aux_ = reinterpret_cast<Waiter*>(reinterpret_cast<uintptr_t>(x) | 1u);
  // relaxed: a hint for readers that may not take the lock (the execution trace's step
  // begin), which take it to read the Extra itself; the lock orders everything else.
  word.fetch_or(kHasExtra, std::memory_order_relaxed);
  return *x;
}

void FutureCore::link_waiter(Waiter* w) noexcept {
  Waiter*& head = waiters();
  w->next = head;
  head = w;
}

void FutureCore::release_waiters() noexcept {
  // No lock: nobody else holds the object. Only list-owned nodes can be left: a waiting
  // fibre or thread, and wait_any's relays, hold a reference while linked.
  for (Waiter* w = std::exchange(waiters(), nullptr); w;) {
    Waiter* next = w->next;  // read first: orphaned() may free w
    w->orphaned();
    w = next;
  }
}

void FutureCore::publish_and_unlock(Status s) noexcept {
  Waiter* list = std::exchange(waiters(), nullptr);
  // Still under the lock and not yet done: recorders (as_completed, wait, gather) note
  // the completion now, so that a task that sees this future done and then finishes
  // itself is always recorded after it. Recording after the publish (in fire()) let a
  // task woken by the status alone be recorded first, on another loop.
  for (Waiter* w = list; w; w = w->next)
    if (w->kind_ == Waiter::Kind::callback) w->on_complete(s);
  // release (with the unlock): the value / extra->error stored before are visible to
  // anyone who acquire-loads the status.
  word.fetch_or(uint32_t(s) << kStatusShift, std::memory_order_release);
  unlock();
  if (list && list->next) {
    // Two or more: done callbacks (add_done_callback, the recorders' wake-ups) go before
    // the fibres and threads, as asyncio runs a future's callbacks before any task they
    // wake can run. Nobody is notified yet, so every node is still alive while we
    // relink them.
    Waiter *callbacks = nullptr, *others = nullptr;
    Waiter **ct = &callbacks, **ot = &others;
    for (Waiter* w = list; w;) {
      Waiter* next = w->next;
      Waiter**& tail = w->kind_ == Waiter::Kind::callback ? ct : ot;
      *tail = w;
      tail = &w->next;
      w = next;
    }
    *ot = nullptr;
    *ct = others;
    list = callbacks;
  }
  while (list) {
    Waiter* w = list;
    list = w->next;  // read before notify: the waiter may vanish once notified
    w->notify();
  }
}

bool FutureCore::cancel_future(const std::string& msg) noexcept {
  std::unique_lock g(*this);
  if (status() != Status::pending) return false;
  if (!msg.empty()) {
    try {
      extra_locked().cancel_message = msg;
    } catch (...) {  // no memory for the message: cancel without it
    }
  }
  g.release();  // publish_and_unlock releases it
  publish_and_unlock(Status::cancelled);
  return true;
}

std::string FutureCore::cancel_message() const {
  std::lock_guard g(*const_cast<FutureCore*>(this));
  Extra* x = extra();
  return x ? x->cancel_message : std::string();
}

void FutureCore::check_outcome(const char* what) {
  switch (status()) {
    case Status::pending:
      throw InvalidStateError(std::string(what) + ": not done yet");
    case Status::result:
      return;
    case Status::cancelled:
      throw CancelledError(cancel_message());
    case Status::exception: {
      // relaxed: only silences the "never retrieved" report.
      word.fetch_or(kRetrieved, std::memory_order_relaxed);
      std::rethrow_exception(extra()->error);  // extra is immutable once done
    }
  }
}

void FutureCore::wait_done(std::source_location where) {
  if (done()) return;
  Waiter w;
  {
    std::lock_guard g(*this);
    if (done()) return;
    link_waiter(&w);
  }
  // The completer detaches w and notifies it. A completion at the same moment as a
  // cancellation of the waiting task counts: the result is not lost; the cancellation
  // stays pending and is raised at the next suspension point.
  if (wait_parked(
          w, [&]() noexcept { return unlink_done_node(this, &w); }, true, where)
          .taken)
    return;
  // asyncio: cancelling the awaiter cancels what it awaits; we then wait for it to end.
  const std::string msg = own_cancel_message();
  if (is_task()) {
    cancel_task(this, msg);
  } else {
    cancel_future(msg);
  }
  join_uncancellable(this, where);
  throw take_cancel(w.task());
}

bool FutureCore::wait_done_until(int64_t deadline_ns, std::source_location where) {
  FutureCore* self = this;
  const auto o = wait_any(&self, 1, deadline_ns, true, where);
  if (o == Waiter::Outcome::cancelled) throw take_cancel(current_task_header());
  return done();
}

namespace {
// One node per future in wait_any: when its future completes, it wakes the shared waiter
// (once). The waiting call owns the nodes and reclaims each before freeing them.
struct RelayNode final : OwnedDoneNode {
  Waiter* target = nullptr;
  std::atomic<uint32_t>* first = nullptr;
  void fire() noexcept override {
    // acq_rel: exactly one relay notifies the target; pairs with the other relays.
    if (first->exchange(1, std::memory_order_acq_rel) == 0) target->notify();
    landed();  // the owner may destroy this node from here on
  }
};
}  // namespace

Waiter::Outcome wait_any(FutureCore* const* futs, std::size_t n, int64_t deadline_ns, bool cancellable,
                         std::source_location where) {
  for (std::size_t i = 0; i < n; ++i)
    if (futs[i]->done()) return Waiter::Outcome::notified;
  if (n == 0 && deadline_ns == 0) throw std::invalid_argument("wait_any: nothing to wait for");
  Waiter w;
  std::atomic<uint32_t> first{0};
  std::unique_ptr<RelayNode[]> nodes(new RelayNode[n]);
  std::size_t linked = 0;
  bool already = false;
  for (; linked < n; ++linked) {
    FutureCore* f = futs[linked];
    RelayNode& r = nodes[linked];
    r.target = &w;
    r.first = &first;
    if (!link_done_node(f, &r)) {
      already = true;
      break;
    }
  }
  Waiter::Outcome o = Waiter::Outcome::notified;
  std::exception_ptr err;  // no memory for the deadline's timer: unlink, then rethrow
  if (!already) {
    try {
      o = w.wait(cancellable, where, deadline_ns);
    } catch (...) {
      err = std::current_exception();
      o = Waiter::Outcome::timed_out;
    }
  }
  // Take every node back; a node a completer already detached must land before it dies.
  bool any_fired = false;
  for (std::size_t i = 0; i < linked; ++i) {
    if (!nodes[i].reclaim(futs[i])) any_fired = true;
  }
  // If a relay claimed `first`, it notified w: let that notify land before w dies.
  if (any_fired && o != Waiter::Outcome::notified && first.load(std::memory_order_acquire)) (void)w.wait(false, where);
  if (err) std::rethrow_exception(err);
  if (o != Waiter::Outcome::notified) {
    for (std::size_t i = 0; i < n; ++i)
      if (futs[i]->done()) return o == Waiter::Outcome::cancelled ? o : Waiter::Outcome::notified;
  }
  return o;
}

// ---- Waiter -----------------------------------------------------------------------

Waiter::Waiter() noexcept {
  task_ = current_task_header();
  kind_ = task_ ? Kind::fibre : Kind::thread;
}

void Waiter::notify() noexcept {
  switch (kind_) {
    case Kind::fibre: {
      TaskHeader* t = task_;
      t->ref();  // t must outlive wake_task even if the waiter returns and the task ends
      // release: what the waker did before is visible to the waiter after it wakes.
      signalled_.store(1, std::memory_order_release);
      wake_task(t);
      t->unref();
      break;
    }
    case Kind::thread:
      signalled_.store(1, std::memory_order_release);
      futex_wake(&signalled_);
      break;
    case Kind::callback:
      fire();
      break;
  }
}

Waiter::Outcome Waiter::wait(bool cancellable, std::source_location where, int64_t deadline_ns, int64_t now_hint) {
  if (kind_ == Kind::thread) {
    while (signalled_.load(std::memory_order_acquire) == 0) {
      if (deadline_ns) {
        const int64_t left = deadline_ns - now_ns();
        if (left <= 0) return Outcome::timed_out;
        timespec rel{time_t(left / 1'000'000'000), long(left % 1'000'000'000)};
        futex_wait(&signalled_, 0, &rel);
      } else {
        futex_wait(&signalled_, 0, nullptr);
      }
    }
    return Outcome::notified;
  }
  if (deadline_ns == 0) {
    for (;;) {
      if (signalled_.load(std::memory_order_acquire)) return Outcome::notified;
      if (cancellable && cancel_pending(task_)) return Outcome::cancelled;
      suspend_current(where);
    }
  }
  // A timed wait: a timer on this loop wakes the task at the deadline.
  if (signalled_.load(std::memory_order_acquire)) return Outcome::notified;
  if (cancellable && cancel_pending(task_)) return Outcome::cancelled;
  if (deadline_ns <= (now_hint != 0 ? now_hint : monotonic_ns())) return Outcome::timed_out;
  TimerEntry* timer = arm_wait_timer(task_, deadline_ns);
  Outcome o;
  for (;;) {
    if (signalled_.load(std::memory_order_acquire)) {
      o = Outcome::notified;
      break;
    }
    if (cancellable && cancel_pending(task_)) {
      o = Outcome::cancelled;
      break;
    }
    if (timer->has_fired()) {
      o = Outcome::timed_out;
      break;
    }
    suspend_current(where, SuspendKind::timed_wait);
  }
  end_wait_timer(task_, timer, deadline_ns);  // kept for the next timed wait, unless it fired
  return o;
}

bool Waiter::cancel_requested() const noexcept { return kind_ == Kind::fibre && cancel_pending(task_); }

void Waiter::raise_cancelled() { throw take_cancel(task_); }

void CallbackWaiter::fire() noexcept {
  keep();  // the completer still holds the future
  std::unique_ptr<CallbackWaiter> self(this);
  std::lock_guard lk(sink_->mu);
  if (!sink_->rt || sink_->rt->closed.load(std::memory_order_acquire)) {
    sink_->report({Report::Kind::callback_failed, "", "done callback dropped: its runtime is shut down", nullptr});
    return;
  }
  try {
    RuntimeImpl* rt = sink_->rt;
    TaskOptions o{.name = "done-callback"};
    auto t = spawn_on(rt, &o, [cb = std::shared_ptr<CallbackWaiter>(self.release())] { cb->invoke(); });
    (void)t;  // dropping the handle: a callback that throws is reported as never retrieved
  } catch (...) {
    sink_->report(
        {Report::Kind::callback_failed, "", "done callback could not be scheduled", std::current_exception()});
  }
}

void add_callback(FutureCore* core, CallbackWaiter* cb) {
  if (!link_done_node(core, cb)) cb->notify();  // already done: schedule it now
}

// ---- Scheduling-state transitions -------------------------------------------------

void wake_task(TaskHeader* t, bool lifo) noexcept { wake_task_in(nullptr, t, lifo); }

void wake_task_in(RuntimeImpl* rt, TaskHeader* t, bool lifo) noexcept {
  // Only the wake that made it READY pushes it, so it is never queued twice. The frame
  // is there: the task is started and not ended (we hold a reference).
  if (task_state::wake(t) == task_state::Wake::must_schedule) {
    RuntimeImpl* const r = rt ? rt : t->frame->rt;
    // Tracing: the wake-up is recorded before the push (the flow id goes in t's frame).
    // Both paths end in a tail call.
    if (trace_any()) [[unlikely]]
      return trace_wake(r, t, lifo);
    r->make_ready(t, lifo);
  }
}

bool cancel_pending(TaskHeader* t) noexcept {
  // Never while unwinding another exception (an exception escaping a destructor during unwinding ends the process).
  // Never for a task shutdown abandoned (kAbandoned): raising again at every wait let a task that catches
  // CancelledError in a loop spin on its worker for ever, so the worker could not be
  // joined; its waits now suspend, and its fibre is never resumed (the same one load).
  return (t->word.load(std::memory_order_acquire) & (kCancelReq | kAbandoned)) == kCancelReq &&
         std::uncaught_exceptions() == 0;
}

CancelledError take_cancel(TaskHeader* t) {
  std::string msg;
  {
    std::lock_guard g(*t);
    Extra* x = t->extra();
    if (x) msg = x->cancel_message;
    // Sticky (shutdown gave up on the task): every later wait is cancelled again.
    if (!(t->word.load(std::memory_order_relaxed) & kStickyCancel))
      t->word.fetch_and(uint16_t(~kCancelReq), std::memory_order_relaxed);
  }
  return CancelledError(std::move(msg));
}

}  // namespace spindle::detail
