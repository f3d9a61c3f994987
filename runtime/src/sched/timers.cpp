// sleep, call_later and timed waits, on the per-loop TimerHeap.
#include <spindle/timers.hpp>

#include <spindle/runtime.hpp>

#include <thread>

#include "core/frame.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/timer_heap.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

void timer_unref(TimerEntry* e) noexcept { e->unref(); }

// Returns false if the runtime's loops had already stopped: `e` was then cancelled and
// its inbox reference released (by us or by shutdown), and the caller's remains.
bool add_timer(RuntimeImpl* rt, TimerEntry* e) {
  Worker* w = current_worker();
  if (w && w->rt == rt) {
    w->timers.push(e);  // we are this worker's running fibre (or its loop): we own the heap
    return true;
  }
  Worker* home = rt->workers[0];
  home->timer_inbox.push(e);  // throws bad_alloc to the caller, who still owns the timer
  // seq_cst fence then load, against release_timers' store then fence: if the loops
  // stopped, either we see it here or shutdown's drain took `e`.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (rt->timers_closed.load(std::memory_order_seq_cst)) {
    home->drop_timer_inbox();  // `e`, unless shutdown's drain (or another arm's) took it first
    return false;
  }
  rt->idle.notify_worker(home);
  return true;
}

TimerEntry* arm_callback(RuntimeImpl* rt, int64_t deadline_ns, std::function<void()> cb) {
  if (!rt) rt = current_runtime();
  if (!rt) throw RuntimeError("call_later: no running runtime on this thread (use Runtime::call_later)");
  if (rt->closing.load(std::memory_order_acquire) && !rt->owns_thread())
    throw RuntimeError("call_later: the runtime is shut down");
  auto* e = new TimerEntry();
  e->deadline = timer_key(deadline_ns);  // "none" sorts last and never comes due
  e->callback = std::move(cb);
  e->refs.store(2, std::memory_order_relaxed);  // the heap's and the caller's
  bool armed;
  try {
    armed = add_timer(rt, e);
  } catch (...) {
    delete e;
    throw;
  }
  if (!armed) {
    // We passed the `closing` check above just before shutdown began, and the loops
    // stopped before they saw the timer: it was cancelled (callback destroyed) and will
    // never run. Tell the caller, as for an arm after shutdown.
    e->unref();
    throw RuntimeError("call_later: the runtime is shut down");
  }
  return e;
}

TimerEntry* arm_wake(TaskHeader* t, int64_t deadline_ns) {
  auto* e = new TimerEntry();
  e->deadline = deadline_ns;
  e->refs.store(2, std::memory_order_relaxed);
  // relaxed: the entry is not shared yet (the push below is on our own thread).
  e->want.store(deadline_ns, std::memory_order_relaxed);  // the wait that arms it uses it
  try {
    current_worker()->timers.push(e);  // may grow the heap: bad_alloc leaves nothing armed
  } catch (...) {
    delete e;
    throw;
  }
  // Only this worker's loop fires its heap, and it is running us: no race with firing.
  t->ref();
  e->task = t;
  return e;
}

TimerEntry* arm_wait_timer(TaskHeader* t, int64_t deadline_ns) {
  TaskFrame* f = t->frame;  // t is the running task: its frame is there
  if (TimerEntry* e = f->wait_timer) {
    // Reuse it if it fires no later than this deadline (the heap then moves it on), has
    // not fired, and the heap has not dropped it: the CAS 0 -> D is what takes it. Its
    // key is read while no wait uses it, when the heap never writes it (timer_heap.hpp).
    // acquire (state) / acq_rel (want): pairs with the heap owner's release store that
    // ended its last move, and orders our deadline before its next look.
    int64_t idle = 0;
    if (e->deadline <= deadline_ns && e->state.load(std::memory_order_acquire) == TimerEntry::armed &&
        e->want.compare_exchange_strong(idle, deadline_ns, std::memory_order_acq_rel))
      return e;
    f->wait_timer = nullptr;
    e->cancel();  // the heap drops it lazily
    e->unref();
  }
  TimerEntry* e = arm_wake(t, deadline_ns);
  f->wait_timer = e;
  return e;
}

void end_wait_timer(TaskHeader* t, TimerEntry* e, int64_t deadline_ns) noexcept {
  // acq_rel: our release hands the entry back unused (the heap may drop it from now on);
  // the acquire reads a move that finished before. Fails only while the heap moves it
  // (kMoving), or if it fired (the wait timed out): give it up then.
  if (!e->has_fired() && e->want.compare_exchange_strong(deadline_ns, 0, std::memory_order_acq_rel)) return;
  t->frame->wait_timer = nullptr;
  e->cancel();  // harmless if it fired
  e->unref();
}

void drop_wait_timer(TaskFrame* f) noexcept {
  if (TimerEntry* e = std::exchange(f->wait_timer, nullptr)) {
    e->cancel();
    e->unref();
  }
}

}  // namespace spindle::detail

namespace spindle {

TimerHandle::TimerHandle(const TimerHandle& o) noexcept : e_(o.e_) {
  if (e_) e_->ref();
}
bool TimerHandle::cancel() noexcept { return e_ && e_->cancel(); }
bool TimerHandle::cancelled() const noexcept {
  return e_ && e_->state.load(std::memory_order_acquire) == detail::TimerEntry::cancelled;
}
std::chrono::steady_clock::time_point TimerHandle::when() const noexcept {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(e_ ? e_->deadline : 0));
}

namespace {

// Sleeps until `deadline` (from deadline.hpp; 0: until cancelled, or for ever on a
// foreign thread, which nothing can cancel).
void sleep_to(int64_t deadline, std::source_location where) {
  if (!detail::current_task_header()) {
    if (deadline == 0) {
      for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
    }
    std::this_thread::sleep_until(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline)));
    return;
  }
  if (deadline != 0 && deadline <= detail::monotonic_ns()) {
    yield(where);
    return;
  }
  detail::Waiter w;  // nobody notifies it: only the deadline or a cancellation ends the wait
  if (w.wait(true, where, deadline) == detail::Waiter::Outcome::cancelled) w.raise_cancelled();
}

}  // namespace

void sleep_until(std::chrono::steady_clock::time_point tp, std::source_location where) {
  sleep_to(detail::deadline_at(tp), where);
}

void sleep(std::chrono::nanoseconds d, std::source_location where) { sleep_to(detail::deadline_after(d), where); }

}  // namespace spindle
