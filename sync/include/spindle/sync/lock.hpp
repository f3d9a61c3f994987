// spindle::Lock — asyncio.Lock: a mutual-exclusion lock for tasks and foreign threads,
// usable with std::scoped_lock / std::unique_lock (it is Lockable).
//
// Owns:        one state word, the holder's identity and the FIFO of waiters.
// State word:  kLocked   — the lock is held (or handed to a waiter that has not resumed);
//              kWaiters  — the waiter queue is not empty;
//              kQLock    — a spinlock bit guarding the queue (held for a few stores);
//              kWoken    — a waiter was woken by unlock() and is on its way to retry:
//                          unlock() wakes no other meanwhile (one wake-up in flight);
//              kStarving — hand-off mode (below).
//              Every change is an atomic RMW on the whole word, so no bit is lost.
//              Invariant: kStarving implies kLocked (every release clears both).
//
// Fairness — the waiters are served first come, first served, with eventual fairness
// towards running tasks (the design of Go's sync.Mutex):
//   * normal mode: unlock() releases the lock and wakes the waiter at the head of the
//     queue. Until that waiter runs, a task that is running may take the free lock (it
//     avoids a context switch per acquisition under contention — a strict hand-off
//     turns a contended lock into a convoy that pays a switch for every lock()). A woken
//     waiter that loses that race goes back to the *head* of the queue, so waiters are
//     always served in arrival order among themselves.
//   * starvation mode: a woken waiter that loses the race after waiting more than
//     kStarveNs (1 ms, Go's value) switches the lock to hand-off mode: unlock() then
//     passes the lock straight to the head waiter (kLocked never drops) and newcomers
//     queue behind (asyncio's strict order). The mode ends when the queue empties or a
//     waiter is served after waiting less than kStarveNs.
//   So no waiter is overtaken by a newcomer for more than about a millisecond.
//
// Fast paths:  uncontended lock() is one CAS (0 -> kLocked); unlock() with nobody queued
//              is one CAS (kLocked -> 0). A contended lock() spins briefly while the lock
//              is held in normal mode (critical sections are short), then queues.
// Cancellation:a waiter cancelled while queued leaves the queue (no trace). A woken
//              waiter cancelled before it retried passes its wake-up on to the next one;
//              a waiter that was handed the lock (starvation mode) unlocks it, handing it
//              on — as asyncio: a cancelled acquirer never keeps the lock and never
//              swallows another's turn. This holds whichever landed first, the cancel or
//              the unlock, as long as both landed before the waiter ran again (park()
//              reports served_late for both). lock() throwing means the caller does not
//              hold it.
// Threads:     every member may be called from any thread; `owner_` is written only by
//              the holder and read by unlock() to refuse a caller that does not hold it.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <atomic>
#include <cstdint>
#include <source_location>

#include <spindle/errors.hpp>
#include <spindle/sync/wait_list.hpp>

namespace spindle {

class Condition;

class Lock {
 public:
  Lock() noexcept = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  /// Destroying a Lock that is held or waited on is undefined (as for std::mutex).
  ~Lock() = default;

  /// Acquires the lock: suspends a fibre, blocks a foreign thread, until it gets it
  /// (waiters in arrival order; see the fairness note above). Throws CancelledError if
  /// the calling task is cancelled while it waits — also when the lock was released or
  /// handed to it just before or after the cancel, before it ran again; it then does not
  /// hold the lock and the next waiter gets it. Not
  /// reentrant: a holder that locks again waits forever. Any thread.
  void lock(std::source_location where = std::source_location::current()) {
    uint32_t s = 0;
    // acquire: pairs with the release in unlock(); the previous holder's writes are ours.
    if (state_.compare_exchange_strong(s, kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
      set_owner();
      return;
    }
    lock_slow(where, true);
  }
  /// Takes the lock if it is free (and not reserved for a starving waiter); never waits.
  /// Any thread.
  [[nodiscard]] bool try_lock() noexcept;
  /// Releases the lock (waking or handing it to the first waiter). Throws
  /// spindle::RuntimeError (asyncio raises RuntimeError) if the caller — the task, or the
  /// foreign thread — does not hold it. Any thread.
  void unlock();
  /// Whether the lock is held (or handed to a waiter that has not resumed yet). A
  /// snapshot; any thread.
  bool locked() const noexcept {
    // relaxed: a snapshot that orders nothing.
    return state_.load(std::memory_order_relaxed) & kLocked;
  }
  /// Whether the calling task (or foreign thread) holds the lock.
  bool held_by_caller() const noexcept;

 private:
  friend class Condition;
  enum : uint32_t { kLocked = 1, kWaiters = 2, kQLock = 4, kWoken = 8, kStarving = 16 };
  enum : uint8_t { kWokenUp = 1, kHanded = 2 };  // SyncWaiter::reason

  void set_owner() noexcept;
  void lock_slow(std::source_location where, bool cancellable);
  void unlock_slow() noexcept;
  void qlock() noexcept;                               // takes kQLock (spins)
  void qunlock(bool clear_starving = false) noexcept;  // drops kQLock; kWaiters := !queue empty
  // With kQLock (and kLocked) held: hands the lock to the head waiter, releases kQLock.
  void hand_off_locked() noexcept;
  // With kWoken just cleared by a woken waiter that gives up: wakes the next waiter if
  // the lock is free and none is on its way.
  void pass_wakeup() noexcept;
  /// Condition's re-acquire after a wait: like lock(), but not a cancellation point.
  void lock_uncancellable(std::source_location where);

  // The queue spinlock as a Lockable, for detail::sync::park().
  struct QueueLock {
    Lock* l;
    void lock() noexcept { l->qlock(); }
    void unlock() noexcept { l->qunlock(); }
  };

  std::atomic<uint32_t> state_{0};
  std::atomic<uintptr_t> owner_{0};  // detail::sync::current_owner() of the holder; 0 when free
  detail::sync::WaitQueue waiters_;  // guarded by kQLock
};

}  // namespace spindle
