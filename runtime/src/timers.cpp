// sleep, call_later and timed waits, on the per-loop TimerHeap.
#include <spindle/timers.hpp>

#include <spindle/runtime.hpp>

#include <thread>

#include "runtime_impl.hpp"
#include "timer_heap.hpp"
#include "worker.hpp"

namespace spindle::detail {

int64_t to_ns(std::chrono::steady_clock::time_point tp) noexcept {
  // steady_clock is CLOCK_MONOTONIC on Linux, the clock monotonic_ns() reads.
  return std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
}

void timer_unref(TimerEntry* e) noexcept { e->unref(); }

void add_timer(RuntimeImpl* rt, TimerEntry* e) {
  Worker* w = current_worker();
  if (w && w->rt == rt) {
    w->timers.push(e);  // we are this worker's running fibre (or its loop): we own the heap
    return;
  }
  Worker* home = rt->workers[0];
  home->timer_inbox.push(e);  // throws bad_alloc to the caller, who still owns the timer
  rt->idle.notify_worker(home);
}

TimerEntry* arm_callback(RuntimeImpl* rt, int64_t deadline_ns, std::function<void()> cb) {
  if (!rt) rt = current_runtime();
  if (!rt) throw RuntimeError("call_later: no running runtime on this thread (use Runtime::call_later)");
  if (rt->closing.load(std::memory_order_acquire) && !rt->owns_thread())
    throw RuntimeError("call_later: the runtime is shut down");
  auto* e = new TimerEntry();
  e->deadline = deadline_ns;
  e->callback = std::move(cb);
  e->refs.store(2, std::memory_order_relaxed);  // the heap's and the caller's
  try {
    add_timer(rt, e);
  } catch (...) {
    delete e;
    throw;
  }
  return e;
}

TimerEntry* arm_wake(TaskHeader* t, int64_t deadline_ns) {
  auto* e = new TimerEntry();
  e->deadline = deadline_ns;
  e->refs.store(2, std::memory_order_relaxed);
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

void sleep_until(std::chrono::steady_clock::time_point tp, std::source_location where) {
  if (!detail::current_task_header()) {
    std::this_thread::sleep_until(tp);
    return;
  }
  const int64_t deadline = detail::to_ns(tp);
  if (deadline <= detail::monotonic_ns()) {
    yield(where);
    return;
  }
  detail::Waiter w;  // nobody notifies it: only the deadline or a cancellation ends the wait
  if (w.wait(true, where, deadline) == detail::Waiter::Outcome::cancelled) w.raise_cancelled();
}

void sleep(std::chrono::nanoseconds d, std::source_location where) {
  sleep_until(std::chrono::steady_clock::now() + (d.count() < 0 ? std::chrono::nanoseconds(0) : d), where);
}

}  // namespace spindle
