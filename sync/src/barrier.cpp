// spindle::Barrier (see barrier.hpp for rounds, breaking and cancellation).
#include <spindle/sync/barrier.hpp>

namespace spindle {

namespace {
// A waiter of the barrier: `index` is written by the completing party before release.
struct BarrierWaiter : detail::sync::SyncWaiter {
  std::size_t index = 0;
};
}  // namespace

Barrier::Barrier(std::size_t parties) : parties_(parties) {
  if (parties == 0) throw std::invalid_argument("Barrier: parties must be > 0");
}

std::size_t Barrier::wait(std::source_location where) {
  BarrierWaiter w;
  {
    detail::sync::WakeList wake;
    std::lock_guard g(mu_);
    if (broken_) throw BrokenBarrierError("Barrier aborted");
    if (waiters_.size() + 1 == parties_) {
      // We complete the round: number the others in arrival order and let them go.
      std::size_t i = 0;
      while (detail::sync::SyncWaiter* o = waiters_.pop_front()) {
        static_cast<BarrierWaiter*>(o)->index = i++;
        o->reason = kReleased;
        wake.add(o);
      }
      return i;  // == parties - 1
    }
    waiters_.push_back(&w);
  }
  // Cancelled while queued: we left the round. Released (or broken) but cancelled before
  // we ran again: the round stands for the others; we raise all the same (asyncio).
  if (detail::sync::park(w, mu_, waiters_, where) != detail::sync::Parked::served) w.raise_cancelled();
  if (w.reason == kBroken) throw BrokenBarrierError("Barrier aborted or reset while waiting");
  return w.index;
}

void Barrier::reset() noexcept {
  detail::sync::WakeList wake;
  std::lock_guard g(mu_);
  broken_ = false;
  while (detail::sync::SyncWaiter* o = waiters_.pop_front()) {
    o->reason = kBroken;
    wake.add(o);
  }
}

void Barrier::abort() noexcept {
  detail::sync::WakeList wake;
  std::lock_guard g(mu_);
  broken_ = true;
  while (detail::sync::SyncWaiter* o = waiters_.pop_front()) {
    o->reason = kBroken;
    wake.add(o);
  }
}

std::size_t Barrier::n_waiting() const noexcept {
  std::lock_guard g(mu_);
  return waiters_.size();
}

bool Barrier::broken() const noexcept {
  std::lock_guard g(mu_);
  return broken_;
}

}  // namespace spindle
