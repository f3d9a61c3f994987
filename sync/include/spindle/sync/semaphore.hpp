// spindle::Semaphore and spindle::BoundedSemaphore — asyncio's: a counter of permits;
// acquire() takes one (waiting while there is none), release() gives one back. A
// SemaphorePermit holds one permit for a scope (RAII).
//
// Owns:        the count of free permits and the FIFO of waiters, both under `mu_`.
// Invariants:  waiters are queued only while no permit is free (value_ == 0), and
//              release() with waiters hands its permit straight to the first one (the
//              count stays 0). So waiters are served in arrival order and a newcomer never
//              takes a permit ahead of them (asyncio's fairness fix, 3.11.1).
// Cancellation:a waiter cancelled while queued leaves without a trace. One that was
//              handed a permit before it ran again — before or after the cancel — gives
//              it back (handing it to the next waiter) and raises, as asyncio does.
// Threads:     every member may be called from any thread.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <cstddef>
#include <cstdint>
#include <source_location>
#include <utility>

#include <spindle/sync/wait_list.hpp>

namespace spindle {

class SemaphorePermit;

class Semaphore {
 public:
  /// A semaphore with `value` free permits. Throws std::invalid_argument if value < 0.
  explicit Semaphore(std::ptrdiff_t value = 1) : Semaphore(value, PTRDIFF_MAX, "Semaphore") {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  /// Takes a permit, waiting (in arrival order) while there is none: suspends a fibre,
  /// blocks a foreign thread. Throws CancelledError if the task is cancelled while it
  /// waits (also when a permit was handed to it just before or after the cancel); it
  /// then holds no permit, and a permit handed to it went on to the next waiter. Any
  /// thread.
  void acquire(std::source_location where = std::source_location::current());
  /// Takes a permit if one is free and nobody is waiting; never waits. Any thread.
  [[nodiscard]] bool try_acquire() noexcept;
  /// Gives a permit back (to the first waiter, if any). BoundedSemaphore: throws
  /// std::invalid_argument if that would make more permits than it started with.
  /// Any thread, holder or not (as asyncio).
  void release();
  /// acquire() wrapped in a SemaphorePermit that releases at the end of its scope.
  [[nodiscard]] SemaphorePermit permit(std::source_location where = std::source_location::current());

  /// True when acquire() would wait (asyncio's locked()). A snapshot.
  bool locked() const noexcept;
  /// Free permits now. A snapshot.
  std::ptrdiff_t value() const noexcept;

 protected:
  Semaphore(std::ptrdiff_t value, std::ptrdiff_t bound, const char* what);

 private:
  friend class SemaphorePermit;
  /// Returns a permit; with `checked`, refuses to exceed the bound (throws).
  void give_back(bool checked);

  mutable detail::sync::SpinLock mu_;
  std::ptrdiff_t value_;             // guarded by mu_
  const std::ptrdiff_t bound_;       // PTRDIFF_MAX unless bounded
  detail::sync::WaitQueue waiters_;  // guarded by mu_
};

/// A Semaphore whose release() throws std::invalid_argument when it would raise the count
/// above its initial value (asyncio's ValueError).
class BoundedSemaphore : public Semaphore {
 public:
  /// Throws std::invalid_argument if value < 0.
  explicit BoundedSemaphore(std::ptrdiff_t value = 1) : Semaphore(value, value, "BoundedSemaphore") {}
};

/// One permit of a Semaphore, held until release() or the end of the scope. Move-only.
/// An empty permit (default-made, moved from, or released) holds nothing.
class SemaphorePermit {
 public:
  SemaphorePermit() noexcept = default;
  /// Acquires a permit of `s` (see Semaphore::acquire for waiting and cancellation).
  explicit SemaphorePermit(Semaphore& s, std::source_location where = std::source_location::current()) : s_(&s) {
    s.acquire(where);
  }
  SemaphorePermit(SemaphorePermit&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  SemaphorePermit& operator=(SemaphorePermit&& o) noexcept {
    if (this != &o) {
      release();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  ~SemaphorePermit() { release(); }

  /// Gives the permit back now (nothing if empty). Never throws: a permit always had a
  /// permit to return, so even a BoundedSemaphore accepts it.
  void release() noexcept {
    if (s_) std::exchange(s_, nullptr)->give_back(false);
  }
  bool owns() const noexcept { return s_ != nullptr; }
  explicit operator bool() const noexcept { return owns(); }

 private:
  friend class Semaphore;
  struct Adopt {};
  SemaphorePermit(Semaphore& s, Adopt) noexcept : s_(&s) {}
  Semaphore* s_ = nullptr;
};

inline SemaphorePermit Semaphore::permit(std::source_location where) {
  acquire(where);
  return SemaphorePermit(*this, SemaphorePermit::Adopt{});
}

}  // namespace spindle
