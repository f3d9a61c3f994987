// spindle::Barrier — asyncio.Barrier: `parties` tasks wait until they have all arrived,
// then all go on; the barrier is then ready for the next round.
//
// Owns:        the queue of arrived waiters (arrival order), the broken flag, both under
//              `mu_`.
// Rounds:      the party that completes a round takes every waiter off the queue, gives
//              each its arrival index (0 for the first; the completing party gets
//              parties-1) and releases them; the barrier is at once empty and usable
//              again (asyncio drains the round first; with a direct hand-off there is
//              nothing to drain).
// Breaking:    abort() breaks the barrier: every waiter and every later wait() raises
//              BrokenBarrierError until reset(). reset() releases the waiters with
//              BrokenBarrierError and leaves the barrier empty and unbroken.
// Cancellation:a waiter cancelled before its round completes leaves the round (the round
//              then needs one more arrival), as asyncio's; indices stay unique because
//              they are given when the round completes. One released (or broken) but
//              cancelled before it ran again raises CancelledError too (asyncio); the
//              round stands for the others, and its index goes unused.
// Threads:     every member may be called from any thread.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <cstddef>
#include <source_location>
#include <stdexcept>

#include <spindle/errors.hpp>
#include <spindle/sync/wait_list.hpp>

namespace spindle {

/// Raised by Barrier::wait when the barrier is broken (abort) or reset while waiting
/// (asyncio.BrokenBarrierError).
class BrokenBarrierError : public detail::ErrorOf<std::runtime_error> {
 public:
  using ErrorOf::ErrorOf;
};

class Barrier {
 public:
  /// A barrier for `parties` tasks. Throws std::invalid_argument if parties is 0.
  explicit Barrier(std::size_t parties);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  /// Arrives and waits until `parties` callers have arrived; returns this caller's
  /// arrival index in the round (0 .. parties-1). Throws BrokenBarrierError if the barrier
  /// is broken, or is aborted or reset while waiting; CancelledError if the task is
  /// cancelled while waiting (it then leaves the round, or, if the round completed just
  /// before or after the cancel, the round stands for the others). Suspends a fibre,
  /// blocks a foreign thread. Any thread.
  std::size_t wait(std::source_location where = std::source_location::current());
  /// Releases the current waiters with BrokenBarrierError and makes the barrier empty and
  /// unbroken. Any thread.
  void reset() noexcept;
  /// Breaks the barrier: current and later waits raise BrokenBarrierError until reset().
  /// Any thread.
  void abort() noexcept;

  std::size_t parties() const noexcept { return parties_; }
  /// How many callers are waiting in the current round. A snapshot.
  std::size_t n_waiting() const noexcept;
  /// Whether the barrier is broken. A snapshot.
  bool broken() const noexcept;

 private:
  enum : uint8_t { kReleased = 1, kBroken = 2 };

  const std::size_t parties_;
  mutable detail::sync::SpinLock mu_;
  detail::sync::WaitQueue waiters_;  // guarded by mu_; its size is the round's arrivals so far
  bool broken_ = false;              // guarded by mu_
};

}  // namespace spindle
