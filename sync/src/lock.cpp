// spindle::Lock (see lock.hpp for the state word, the two modes and their invariants).
#include <spindle/sync/lock.hpp>

#include <chrono>

namespace spindle {

namespace {
// How many times a contended lock() re-reads the word before it queues. A holder on
// another worker usually releases within this window (critical sections are short); a
// holder that is itself suspended does not, and then we waste about a microsecond.
constexpr int kSpins = 64;
// A woken waiter that loses the race after waiting this long switches to hand-off mode.
constexpr int64_t kStarveNs = 1'000'000;

int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void Lock::set_owner() noexcept {
  // relaxed: only the holder writes owner_, and only the misuse checks read it; the
  // holder always reads its own write, and a non-holder can never read its own id (it
  // stored 0 over it when it last unlocked).
  owner_.store(detail::sync::current_owner(), std::memory_order_relaxed);
}

bool Lock::held_by_caller() const noexcept {
  // relaxed: see set_owner().
  return (state_.load(std::memory_order_relaxed) & kLocked) &&
         owner_.load(std::memory_order_relaxed) == detail::sync::current_owner();
}

bool Lock::try_lock() noexcept {
  uint32_t s = state_.load(std::memory_order_relaxed);
  while (!(s & kLocked)) {  // (kStarving implies kLocked)
    // acquire: pairs with the release in unlock().
    if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
      set_owner();
      return true;
    }
  }
  return false;
}

void Lock::qlock() noexcept {
  detail::Backoff b;
  uint32_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s & kQLock) {
      b.pause();
      s = state_.load(std::memory_order_relaxed);
      continue;
    }
    // acquire: pairs with the release in qunlock(), so the queue links are current.
    if (state_.compare_exchange_weak(s, s | kQLock, std::memory_order_acquire, std::memory_order_relaxed)) return;
  }
}

void Lock::qunlock(bool clear_starving) noexcept {
  const uint32_t waiters = waiters_.empty() ? 0u : uint32_t{kWaiters};
  const uint32_t drop = kQLock | kWaiters | (clear_starving ? uint32_t{kStarving} : 0u);
  uint32_t s = state_.load(std::memory_order_relaxed);
  // release: publishes the queue links to the next kQLock holder.
  while (
      !state_.compare_exchange_weak(s, (s & ~drop) | waiters, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

void Lock::hand_off_locked() noexcept {
  detail::sync::WakeList wake;
  detail::sync::SyncWaiter* w = waiters_.pop_front();  // the caller saw kWaiters: not null
  w->reason = kHanded;
  wake.add(w);
  // kLocked stays set: w owns the lock from now on. Nobody left: starvation is over. The
  // critical section's writes reach w through its notify (release/acquire on the waiter).
  qunlock(waiters_.empty());
}

void Lock::lock_slow(std::source_location where, bool cancellable) {
  int64_t queued_at = 0;  // when we first queued (0: not yet)
  bool front = false;     // queue at the head: we were woken and lost the race
  bool starving = false;  // ... after waiting more than kStarveNs
  for (;;) {
    uint32_t s = state_.load(std::memory_order_relaxed);
    // Spin while the holder may be running and the lock is not reserved for a waiter.
    for (int i = 0; i < kSpins && !starving && !(s & kStarving); ++i) {
      // acquire: pairs with the release in unlock().
      if (!(s & kLocked)) {
        if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
          set_owner();
          return;
        }
        continue;
      }
      detail::cpu_relax();
      s = state_.load(std::memory_order_relaxed);
    }

    detail::sync::SyncWaiter w;  // a fresh one per round: a Waiter is notified only once
    detail::Backoff b;
    s = state_.load(std::memory_order_relaxed);
    for (;;) {
      if (!(s & kLocked)) {  // free (so not starving): take it rather than queue
        // acquire: pairs with the release in unlock().
        if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
          set_owner();
          return;
        }
        continue;
      }
      if (s & kQLock) {
        b.pause();
        s = state_.load(std::memory_order_relaxed);
        continue;
      }
      // acquire: pairs with qunlock's release (queue links). kLocked cannot drop while
      // we hold kQLock (every release path waits for kQLock to be clear), so whoever
      // releases it after us sees kWaiters and wakes or serves us.
      const uint32_t n = s | kQLock | (starving ? uint32_t{kStarving} : 0u);
      if (state_.compare_exchange_weak(s, n, std::memory_order_acquire, std::memory_order_relaxed)) break;
    }
    if (front) {
      waiters_.push_front(&w);
    } else {
      waiters_.push_back(&w);
    }
    qunlock();
    if (!queued_at) queued_at = now_ns();

    QueueLock ql{this};
    const detail::sync::Parked p = detail::sync::park(w, ql, waiters_, where, cancellable);
    if (p == detail::sync::Parked::cancelled) w.raise_cancelled();  // unlinked: no trace
    if (w.reason == kHanded) {
      set_owner();
      if (p == detail::sync::Parked::served_late) {
        unlock();  // a cancelled acquirer does not keep the lock: hand it on
        w.raise_cancelled();
      }
      // relaxed: the bit only steers policy; ordering comes from kLocked and the notify.
      if (now_ns() - queued_at < kStarveNs) state_.fetch_and(~kStarving, std::memory_order_relaxed);
      return;
    }
    // Woken in normal mode: the lock was released for us to race for. Drop the token so
    // that the next unlock() may wake someone again.
    // relaxed: kWoken only limits wake-ups; every decision re-reads the word in an RMW.
    state_.fetch_and(~kWoken, std::memory_order_relaxed);
    if (p == detail::sync::Parked::served_late) {
      pass_wakeup();  // we will not retry: let the next waiter have the wake-up
      w.raise_cancelled();
    }
    front = true;
    starving = now_ns() - queued_at >= kStarveNs;
  }
}

void Lock::lock_uncancellable(std::source_location where) {
  uint32_t s = 0;
  // acquire: pairs with the release in unlock().
  if (state_.compare_exchange_strong(s, kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
    set_owner();
    return;
  }
  lock_slow(where, false);
}

void Lock::unlock() {
  const uintptr_t me = detail::sync::current_owner();
  // relaxed: see set_owner().
  if (!(state_.load(std::memory_order_relaxed) & kLocked) || owner_.load(std::memory_order_relaxed) != me)
    throw RuntimeError("Lock::unlock: the lock is not held by the caller");
  owner_.store(0, std::memory_order_relaxed);
  uint32_t s = kLocked;
  // release: publishes the critical section to the next locker (its acquire CAS).
  if (state_.compare_exchange_strong(s, 0, std::memory_order_release, std::memory_order_relaxed)) return;
  unlock_slow();
}

void Lock::unlock_slow() noexcept {
  detail::Backoff b;
  uint32_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s & kQLock) {
      // Someone is changing the queue (maybe joining it because they saw us holding the
      // lock): decide only once the queue and its bits are settled.
      b.pause();
      s = state_.load(std::memory_order_relaxed);
      continue;
    }
    if ((s & kStarving) && (s & kWaiters)) {
      // Hand-off mode. acquire: pairs with qunlock's release (queue links).
      if (state_.compare_exchange_weak(s, s | kQLock, std::memory_order_acquire, std::memory_order_relaxed)) {
        hand_off_locked();
        return;
      }
      continue;
    }
    if (!(s & kWaiters) || (s & kWoken)) {
      // Nobody to wake (or one is already on its way): just release. Clearing kStarving
      // too keeps "kStarving implies kLocked". release: publishes the critical section.
      if (state_.compare_exchange_weak(s, s & ~(kLocked | kStarving), std::memory_order_release,
                                       std::memory_order_relaxed))
        return;
      continue;
    }
    // Normal mode with waiters and none woken: release the lock and, in the same RMW,
    // take the queue and the wake-up token. acq_rel: release publishes the critical
    // section to whoever takes the lock next; acquire pairs with qunlock (queue links).
    if (state_.compare_exchange_weak(s, (s & ~kLocked) | kQLock | kWoken, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
      detail::sync::WakeList wake;
      detail::sync::SyncWaiter* w = waiters_.pop_front();  // kWaiters was set: not null
      w->reason = kWokenUp;
      wake.add(w);
      qunlock();
      return;
    }
  }
}

void Lock::pass_wakeup() noexcept {
  detail::Backoff b;
  uint32_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (s & kQLock) {
      b.pause();
      s = state_.load(std::memory_order_relaxed);
      continue;
    }
    // Held: its holder wakes the next waiter on unlock (kWoken is clear now). Nobody
    // queued, or someone already woken: nothing to pass on.
    if ((s & kLocked) || !(s & kWaiters) || (s & kWoken)) return;
    // acquire: pairs with qunlock's release (queue links).
    if (state_.compare_exchange_weak(s, s | kQLock | kWoken, std::memory_order_acquire, std::memory_order_relaxed)) {
      detail::sync::WakeList wake;
      detail::sync::SyncWaiter* w = waiters_.pop_front();
      w->reason = kWokenUp;
      wake.add(w);
      qunlock();
      return;
    }
  }
}

}  // namespace spindle
