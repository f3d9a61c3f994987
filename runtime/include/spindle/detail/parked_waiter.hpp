// Parking one Waiter where another thread can take it, and getting it back safely: the
// one protocol behind every wait that hands its Waiter over (a future's waiter list, a
// synchronisation primitive's queue, a TaskGroup's joiner, a Generator's consumer and
// producer, a JobScheduler's room and idle lists, a Watch, an FdSource's reader and
// writer). For the modules' internal use; not a public API.
//
// The protocol:
//   1. Under the lock that guards some slot or list, the waiting side puts its Waiter
//      (on its own stack) there and releases the lock.
//   2. A notifier, under that lock, takes the Waiter out (and may complete the operation
//      on the waiter's behalf), releases the lock, then calls notify(). Taking it out
//      is what gives the notifier the right to notify it; nobody else ever does.
//   3. The waiting side waits (wait_parked, wait_parked_until). If the wait ends notified, the Waiter is
//      out of every slot and the notify has landed: it may go at once. If it ends for
//      another reason (a cancellation, the deadline, or no memory for the deadline's
//      timer), the waiting side retakes the lock and takes its Waiter back if it is
//      still there: then nothing was done on its behalf. If it is gone, a notifier took
//      it, and its notify may still be on its way: the waiter waits for it, not
//      cancellably, since the Waiter dies with the caller's frame and notify() must not
//      touch freed memory. The caller then knows it was served (`taken`), whatever ended
//      its wait first.
//
// What a caller does with a wait that was served and cancelled at once (keep what it was
// handed, pass it on, or raise) is its own rule; the synchronisation primitives' rule
// (cancel, then serve: `served_late`) is in spindle/sync/wait_list.hpp.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <cstdint>
#include <mutex>
#include <source_location>

#include <spindle/detail/core.hpp>

namespace spindle::detail {

/// How a parked wait ended.
struct ParkEnd {
  /// Why the wait returned: `notified`, or what ended it first (`cancelled`, `timed_out`).
  Waiter::Outcome outcome;
  /// A notifier took the waiter out of its slot (always so when `notified`), and its
  /// notify has landed: the operation was done on the waiter's behalf.
  bool taken;
};

namespace parked {
// After a wait that ended without a notify: takes w back, or lets the notify of whoever
// took it land. True if a notifier had taken it.
template <class TakeBack>
inline bool settle(Waiter& w, TakeBack& take_back, std::source_location where) {
  if (take_back()) return false;
  (void)w.wait(false, where);  // not cancellable, no deadline: returns only once notified
  return true;
}
}  // namespace parked

/// Waits on `w`, which the caller has parked in a slot or list and whose lock it has
/// released (step 1 above). `take_back()` is called at most once, with no lock held,
/// when the wait ends without a notify: under the slot's lock it takes `w` out if it is
/// still there and returns true, or returns false if a notifier took it (it may also
/// fix, under that same lock hold, what depends on the answer). `cancellable` is
/// Waiter::wait's.
///
/// Returns once `w` is out of every slot and no notify of it is still on its way, so
/// that the caller may destroy it. Throws nothing (a wait without a deadline allocates
/// nothing). Any fibre or thread.
template <class TakeBack>
[[nodiscard]] inline ParkEnd wait_parked(Waiter& w, TakeBack&& take_back, bool cancellable,
                                         std::source_location where) {
  const Waiter::Outcome o = w.wait(cancellable, where);
  if (o == Waiter::Outcome::notified) return {o, true};
  return {o, parked::settle(w, take_back, where)};
}

/// wait_parked with a deadline (deadline_ns: CLOCK_MONOTONIC ns; 0: none), which may end
/// `timed_out`; now_ns is Waiter::wait's (a clock reading the caller has just taken, or 0). Throws what Waiter::wait
/// throws (std::bad_alloc for the deadline's timer), after the same cleanup: nothing stays parked, no notify is on its
/// way. (Apart from wait_parked so that the waits without one carry no exception path.)
template <class TakeBack>
[[nodiscard]] ParkEnd wait_parked_until(Waiter& w, TakeBack&& take_back, bool cancellable, std::source_location where,
                                        int64_t deadline_ns, int64_t now_ns = 0) {
  Waiter::Outcome o;
  try {
    o = w.wait(cancellable, where, deadline_ns, now_ns);
  } catch (...) {
    (void)parked::settle(w, take_back, where);
    throw;
  }
  if (o == Waiter::Outcome::notified) return {o, true};
  return {o, parked::settle(w, take_back, where)};
}

/// The take_back of a Waiter parked alone in `slot`, a pointer that `lk` guards and that
/// a notifier clears when it takes the waiter.
template <class L>
auto take_back_slot(L& lk, Waiter*& slot, Waiter& w) noexcept {
  return [&lk, &slot, &w]() noexcept {
    std::lock_guard g(lk);
    if (slot != &w) return false;
    slot = nullptr;
    return true;
  };
}

}  // namespace spindle::detail
