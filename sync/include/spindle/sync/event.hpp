// spindle::Event — asyncio.Event: a flag that tasks (and foreign threads) wait to be set.
//
// Owns:        the flag and the FIFO of waiters.
// Invariants:  a waiter is linked only while the flag is clear (set() empties the queue
//              under the lock, and waiters re-check the flag under the lock before
//              linking). Waiters taken off by set() are released whatever clear() does
//              afterwards, as in asyncio.
// Threads:     every member may be called from any thread; `flag_` is atomic (fast paths
//              read it without the lock), `waiters_` only under `mu_`.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <atomic>
#include <source_location>

#include <spindle/sync/wait_list.hpp>

namespace spindle {

class Event {
 public:
  Event() noexcept = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  /// Sets the flag and releases every waiter. Harmless when already set. Any thread;
  /// never blocks (beyond the short internal lock) and never throws.
  void set() noexcept;
  /// Clears the flag: later wait() calls wait. Waiters already released stay released.
  /// Any thread.
  void clear() noexcept;
  /// Whether the flag is set. Any thread.
  bool is_set() const noexcept {
    // acquire: pairs with the release in set(), so what the setter wrote before set() is
    // visible to a caller that sees the flag.
    return flag_.load(std::memory_order_acquire);
  }
  /// Returns at once if the flag is set (not a suspension point then); otherwise waits
  /// until set() is called: suspends a fibre, blocks a foreign thread. Throws
  /// CancelledError if the calling task is cancelled while it waits — also when a set()
  /// released it just before or after the cancel, before it ran again (asyncio; the
  /// other waiters are released all the same). Any thread.
  void wait(std::source_location where = std::source_location::current()) {
    if (!is_set()) wait_slow(where);
  }

 private:
  void wait_slow(std::source_location where);

  std::atomic<bool> flag_{false};
  detail::sync::SpinLock mu_;
  detail::sync::WaitQueue waiters_;  // guarded by mu_
};

}  // namespace spindle
