// spindle::Condition (see condition.hpp for the protocol).
#include <spindle/sync/condition.hpp>

namespace spindle {

void Condition::wait(std::source_location where) {
  if (!lock_->held_by_caller()) throw RuntimeError("Condition::wait: the lock is not held by the caller");
  detail::sync::SyncWaiter w;
  {
    std::lock_guard g(mu_);
    waiters_.push_back(&w);  // before the Lock goes: a notifier (who needs it) will find us
  }
  lock_->unlock();
  const detail::sync::Parked p = detail::sync::park(w, mu_, waiters_, where);
  lock_->lock_uncancellable(where);                               // asyncio: re-acquired even when cancelled
  if (p == detail::sync::Parked::cancelled) w.raise_cancelled();  // unlinked: no trace
  // Notified, but cancelled — before or after the notify (served_late), or while we
  // re-acquired the Lock, which is part of the wait (asyncio): raise, holding the Lock,
  // and pass the notification on, so that a cancelled waiter never swallows a wake-up
  // meant for a task that will act on it (asyncio 3.13 does the same; a waiter woken
  // this way and finding nothing to do is a spurious wake-up, which the protocol allows).
  if (w.cancel_requested()) {
    notify(1);
    w.raise_cancelled();
  }
}

void Condition::notify(std::size_t n) {
  if (!lock_->held_by_caller()) throw RuntimeError("Condition::notify: the lock is not held by the caller");
  detail::sync::WakeList wake;
  std::lock_guard g(mu_);
  for (; n > 0; --n) {
    detail::sync::SyncWaiter* w = waiters_.pop_front();
    if (!w) break;
    wake.add(w);
  }
}

void Condition::notify_all() {
  if (!lock_->held_by_caller()) throw RuntimeError("Condition::notify_all: the lock is not held by the caller");
  detail::sync::WakeList wake;
  std::lock_guard g(mu_);
  while (detail::sync::SyncWaiter* w = waiters_.pop_front()) wake.add(w);
}

}  // namespace spindle
