// The parts every synchronisation primitive is made of. Internal: namespace
// spindle::detail::sync (so that no name clashes with the runtime's own internals); not a
// primitive itself; included by each primitive's header.
//
//   SpinLock    detail::SpinLock (spindle/detail/spin.hpp) for the primitives' short
//               critical sections: never held across a suspension.
//   SyncWaiter  a detail::Waiter (one waiting fibre or foreign thread) with the two fields
//               a primitive needs: `linked` (on a WaitQueue) and `reason` (why a waker took
//               it off). Both are guarded by the lock of the primitive that owns the queue.
//   WaitQueue   an intrusive FIFO of SyncWaiters: arrival order is service order.
//   WakeList    the waiters a waker has taken off a queue, notified when the WakeList is
//               destroyed — i.e. after the primitive's lock is released (declare the
//               WakeList before the lock guard).
//   park()      the one waiting protocol (see its comment), including cancellation; built
//               on detail::wait_parked (spindle/detail/parked_waiter.hpp).
//
// The protocol, shared by every primitive (the "hand-off" design):
//   1. Under the primitive's lock the caller finds it must wait: it links its waiter at
//      the tail of a WaitQueue and releases the lock.
//   2. A waker, under the lock, takes the waiter at the head off the queue, completes the
//      operation on its behalf (hands it the lock, the permit, the item; or marks why it
//      was released: closed, shut down, broken), releases the lock, then notifies it.
//      The waiter's operation is therefore finished the moment it is unlinked: FIFO
//      fairness follows, and nobody can overtake a waiter that was already served.
//      (Lock's normal mode is the one exception: it wakes the head waiter to retry, see
//      lock.hpp.) A waiter never notifies itself: one that finds itself served while it
//      re-checks (Channel) just takes the result.
//   3. Cancellation, then serving: a waiter whose task is cancelled while it waits
//      either is still linked — nothing was done on its behalf: it unlinks itself and
//      raises CancelledError (no trace) — or was already served. "Already served" covers
//      both orders in which a cancel and a hand-off can land before the waiter runs
//      again: park() reports it (`served_late`) whether the fibre woke for the
//      cancellation or for the notify, so no primitive can mistake a cancelled waiter
//      for a plain served one. The primitive then decides, by one rule:
//        - what it was handed can go on to the next waiter (Lock's lock or wake-up,
//          Semaphore's permit, Condition's notification): it passes it on and raises
//          CancelledError holding nothing (asyncio: a cancelled acquirer never keeps
//          the lock, and never swallows another's turn);
//        - nothing to pass on (Event, Barrier, Queue::join, or a waiter released by
//          close / shutdown / abort): it raises CancelledError;
//        - data already moved (a Queue/Channel item handed to a getter, or a putter's
//          item moved into the store): the transfer stands — the call returns normally
//          and the cancellation is raised at the next suspension point. Undoing it could
//          lose or reorder the item, and a put that raised CancelledError with its item
//          enqueued would be ambiguous. A call that raises transferred nothing.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <source_location>

#include <spindle/detail/core.hpp>
#include <spindle/detail/parked_waiter.hpp>
#include <spindle/detail/spin.hpp>

namespace spindle::detail::sync {

using detail::Backoff;
using detail::SpinLock;

/// A detail::Waiter with the bookkeeping of a WaitQueue. Construct it on the waiting
/// fibre's (or thread's) stack; it binds to the caller.
struct SyncWaiter : Waiter {
  bool linked = false;  // on a WaitQueue; guarded by the owning primitive's lock
  uint8_t reason = 0;   // set by the waker before it unlinks; meaning is per primitive
};

/// An intrusive FIFO of SyncWaiters (through Waiter::next / prev). Not thread-safe: the
/// owning primitive guards it with its lock.
class WaitQueue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  SyncWaiter* front() const noexcept { return head_; }
  std::size_t size() const noexcept { return size_; }

  void push_back(SyncWaiter* w) noexcept {
    w->next = nullptr;
    w->prev = tail_;
    if (tail_) {
      tail_->next = w;
    } else {
      head_ = w;
    }
    tail_ = w;
    w->linked = true;
    ++size_;
  }
  void push_front(SyncWaiter* w) noexcept {
    w->prev = nullptr;
    w->next = head_;
    if (head_) {
      head_->prev = w;
    } else {
      tail_ = w;
    }
    head_ = w;
    w->linked = true;
    ++size_;
  }
  void erase(SyncWaiter* w) noexcept {
    if (w->prev) {
      w->prev->next = w->next;
    } else {
      head_ = static_cast<SyncWaiter*>(w->next);
    }
    if (w->next) {
      w->next->prev = w->prev;
    } else {
      tail_ = static_cast<SyncWaiter*>(w->prev);
    }
    w->next = w->prev = nullptr;
    w->linked = false;
    --size_;
  }
  SyncWaiter* pop_front() noexcept {
    SyncWaiter* w = head_;
    if (w) erase(w);
    return w;
  }

 private:
  SyncWaiter* head_ = nullptr;
  SyncWaiter* tail_ = nullptr;
  std::size_t size_ = 0;
};

/// Waiters taken off a queue, to notify once the primitive's lock is released. Declare it
/// before the lock guard: destruction order then unlocks first and notifies second.
/// Each waiter is notified exactly once, in the order added.
class WakeList {
 public:
  WakeList() noexcept = default;
  WakeList(const WakeList&) = delete;
  WakeList& operator=(const WakeList&) = delete;
  ~WakeList() { notify_all(); }

  /// w must already be unlinked from its queue (its `next` is reused here).
  void add(SyncWaiter* w) noexcept {
    w->next = nullptr;
    if (tail_) {
      tail_->next = w;
    } else {
      head_ = w;
    }
    tail_ = w;
  }
  bool empty() const noexcept { return head_ == nullptr; }
  void notify_all() noexcept {
    Waiter* w = head_;
    head_ = tail_ = nullptr;
    while (w) {
      Waiter* next = w->next;  // read first: a notified waiter may be gone at once
      w->notify();
      w = next;
    }
  }

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

/// How a park() ended.
enum class Parked : uint8_t {
  served,       ///< a waker took the waiter off its queue and completed its operation
  served_late,  ///< a waker served the waiter, and the task has a cancellation pending
                ///< (requested before or after the hand-off): the primitive passes
                ///< what it was handed on and raises, or keeps a data transfer (see 3.)
  cancelled,    ///< the waiter was still queued: park() unlinked it; nothing was done on
                ///< its behalf. The caller cleans up and calls w.raise_cancelled().
};

/// Waits on `w`, which the caller linked into `q` under `lk` and then released `lk`
/// (detail::wait_parked's protocol). On cancellation, retakes `lk` and, if `w` is still
/// linked, unlinks it and runs `on_unlink()` under `lk` (to fix counters that track the
/// queue). A foreign thread's wait never ends `cancelled` or `served_late`; neither does
/// a fibre's when `cancellable` is false.
template <class L, class F>
[[nodiscard]] inline Parked park(SyncWaiter& w, L& lk, WaitQueue& q, std::source_location where, F&& on_unlink,
                                 bool cancellable = true) {
  const ParkEnd e = wait_parked(
      w,
      [&] {
        std::lock_guard g(lk);
        if (!w.linked) return false;  // a waker unlinked us: we were served
        q.erase(&w);
        on_unlink();
        return true;
      },
      cancellable, where);
  if (e.outcome == Waiter::Outcome::notified) {
    // wait() prefers the notify when both have landed by the time the fibre runs (cancel
    // then serve, or serve then cancel): the cancellation must not be lost on that
    // account — the primitive would keep what it was handed and raise only at the next
    // suspension point, holding it (a Lock's next waiter then never got it).
    return cancellable && w.cancel_requested() ? Parked::served_late : Parked::served;
  }
  return e.taken ? Parked::served_late : Parked::cancelled;
}
template <class L>
[[nodiscard]] inline Parked park(SyncWaiter& w, L& lk, WaitQueue& q, std::source_location where,
                                 bool cancellable = true) {
  return park(
      w, lk, q, where, [] {}, cancellable);
}

/// Who is calling, for the primitives that know their holder (Lock, Condition): the
/// running task (stable across migrations), or, on a thread outside any runtime, that
/// thread. Never 0.
uintptr_t current_owner() noexcept;

}  // namespace spindle::detail::sync
