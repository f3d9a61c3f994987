// spindle::Event (see event.hpp for the design).
#include <spindle/sync/event.hpp>

namespace spindle {

void Event::set() noexcept {
  if (is_set()) return;
  detail::sync::WakeList wake;  // notified after mu_ is released
  std::lock_guard g(mu_);
  // release: a waiter or is_set() that sees the flag (acquire) sees what we wrote first.
  flag_.store(true, std::memory_order_release);
  while (detail::sync::SyncWaiter* w = waiters_.pop_front()) wake.add(w);
}

void Event::clear() noexcept {
  // relaxed: clearing publishes nothing; waiters decide under mu_, which orders this
  // store against set() and wait_slow() for anyone who takes the lock afterwards.
  flag_.store(false, std::memory_order_relaxed);
}

void Event::wait_slow(std::source_location where) {
  detail::sync::SyncWaiter w;
  {
    std::lock_guard g(mu_);
    // relaxed is enough under the lock: set() stores the flag while holding mu_; the
    // acquire that orders its payload for us is the lock's.
    if (flag_.load(std::memory_order_relaxed)) return;
    waiters_.push_back(&w);
  }
  // Cancelled while waiting, or released by set() but cancelled before it ran again:
  // either way it raises (asyncio); nothing was handed to it that another waiter needs.
  if (detail::sync::park(w, mu_, waiters_, where) != detail::sync::Parked::served) w.raise_cancelled();
}

}  // namespace spindle
