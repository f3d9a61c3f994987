// spindle::Condition — asyncio.Condition: waiters release a Lock, wait to be notified,
// and hold the Lock again when they return (or throw).
//
// Owns:        the FIFO of waiters, guarded by its own SpinLock `mu_`; and a Lock, unless
//              it was given one to share (asyncio's Condition(lock)).
// Protocol:    wait() links its waiter under `mu_` *before* it releases the Lock, and
//              notify() requires the Lock, so a notify that follows the release always
//              finds the waiter: no lost wake-up. notify(n) takes up to n waiters off the
//              queue in arrival order; a waiter that was taken off is notified for good.
// Cancellation:a waiter cancelled while still queued leaves the queue, re-acquires the
//              Lock (the re-acquire itself cannot be cancelled) and raises CancelledError
//              holding it, as asyncio does. One that was notified but is cancelled before
//              it returns (before or after the notify, or while it re-acquires the Lock)
//              also raises holding the Lock, and passes the notification on with
//              notify(1), so no wake-up is lost (asyncio 3.13; the waiter it reaches may
//              find nothing to do: a spurious wake-up, which the protocol allows).
// Threads:     every member may be called from any thread (fibres on any worker, foreign
//              threads), with the Lock held where stated.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <concepts>
#include <cstddef>
#include <source_location>

#include <spindle/sync/lock.hpp>
#include <spindle/sync/wait_list.hpp>

namespace spindle {

class Condition {
 public:
  /// A condition with a Lock of its own.
  Condition() noexcept : lock_(&own_) {}
  /// A condition over `lock`, which must outlive it (several conditions may share one).
  explicit Condition(Lock& lock) noexcept : lock_(&lock) {}
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  /// The underlying Lock (Lockable: so is the Condition itself).
  void lock(std::source_location where = std::source_location::current()) { lock_->lock(where); }
  [[nodiscard]] bool try_lock() noexcept { return lock_->try_lock(); }
  void unlock() { lock_->unlock(); }
  bool locked() const noexcept { return lock_->locked(); }

  /// Releases the Lock, waits until notified, re-acquires the Lock and returns. The
  /// caller must hold the Lock (else spindle::RuntimeError, as asyncio). Throws
  /// CancelledError if the calling task is cancelled before it returns (even if it was
  /// notified: the notification then goes to another waiter) — holding the Lock again.
  /// Suspends a fibre, blocks a foreign thread.
  void wait(std::source_location where = std::source_location::current());
  /// Waits until pred() is true (checked first, and after each wake-up, with the Lock
  /// held); asyncio's wait_for(predicate). Same rules as wait().
  template <class Pred>
  requires std::predicate<Pred&>
  void wait(Pred pred, std::source_location where = std::source_location::current()) {
    while (!pred()) wait(where);
  }
  template <class Pred>
  requires std::predicate<Pred&>
  void wait_for(Pred pred, std::source_location where = std::source_location::current()) {
    wait(std::move(pred), where);
  }

  /// Wakes up to n waiters, oldest first. The caller must hold the Lock (else
  /// spindle::RuntimeError). Any thread.
  void notify(std::size_t n = 1);
  /// Wakes every waiter. The caller must hold the Lock (else spindle::RuntimeError).
  void notify_all();

 private:
  Lock own_;
  Lock* lock_;
  detail::sync::SpinLock mu_;
  detail::sync::WaitQueue waiters_;  // guarded by mu_
};

}  // namespace spindle
