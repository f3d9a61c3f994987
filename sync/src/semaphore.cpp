// spindle::Semaphore / BoundedSemaphore (see semaphore.hpp for the invariants).
#include <spindle/sync/semaphore.hpp>

#include <stdexcept>
#include <string>

namespace spindle {

Semaphore::Semaphore(std::ptrdiff_t value, std::ptrdiff_t bound, const char* what) : value_(value), bound_(bound) {
  if (value < 0) throw std::invalid_argument(std::string(what) + ": the initial value must be >= 0");
}

void Semaphore::acquire(std::source_location where) {
  detail::sync::SyncWaiter w;
  {
    std::lock_guard g(mu_);
    if (value_ > 0) {  // value_ > 0 implies nobody is queued
      --value_;
      return;
    }
    waiters_.push_back(&w);
  }
  switch (detail::sync::park(w, mu_, waiters_, where)) {
    case detail::sync::Parked::served:
      return;  // release() handed us its permit
    case detail::sync::Parked::served_late:
      give_back(false);  // asyncio: a cancelled acquirer passes the permit on
      w.raise_cancelled();
    case detail::sync::Parked::cancelled:
      w.raise_cancelled();
  }
}

bool Semaphore::try_acquire() noexcept {
  std::lock_guard g(mu_);
  if (value_ == 0) return false;
  --value_;
  return true;
}

void Semaphore::release() { give_back(true); }

void Semaphore::give_back(bool checked) {
  detail::sync::WakeList wake;
  std::lock_guard g(mu_);
  if (detail::sync::SyncWaiter* w = waiters_.pop_front()) {
    wake.add(w);  // the permit goes straight to the first waiter
    return;
  }
  if (value_ >= bound_) {
    if (checked) throw std::invalid_argument("BoundedSemaphore released too many times");
    return;
  }
  ++value_;
}

bool Semaphore::locked() const noexcept {
  std::lock_guard g(mu_);
  return value_ == 0;
}

std::ptrdiff_t Semaphore::value() const noexcept {
  std::lock_guard g(mu_);
  return value_;
}

}  // namespace spindle
