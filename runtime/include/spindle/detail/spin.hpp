// Spinning, in one place: the pause instruction, a backoff that yields the thread after a
// while, and the test-and-test-and-set lock every short critical section in spindle uses
// (futures' waiter lists excepted: FutureCore keeps its lock bit inside its state word).
//
// Invariant: a SpinLock is held only across a few loads, stores and list operations,
// never across a suspension, so a fibre never sleeps holding one. A thread holding one
// may still be preempted by the OS (a foreign thread, or a descheduled worker); that is
// why Backoff yields the thread after a burst of pauses instead of spinning forever.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <atomic>

namespace spindle::detail {

/// The CPU's spin-wait hint (PAUSE on x86, YIELD on AArch64): cheaper for a sibling
/// hyperthread and for the memory system than a bare reload loop.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Spin-wait pacing: a burst of pauses, then a thread yield now and then.
class Backoff {
 public:
  void pause() noexcept {
    if (++spins_ < kBurst) {
      cpu_relax();
    } else {
      spins_ = 0;
      yield_thread();
    }
  }

 private:
  static constexpr unsigned kBurst = 128;
  static void yield_thread() noexcept;  // std::this_thread::yield, out of line (core.cpp)
  unsigned spins_ = 0;
};

/// A short-section lock, usable from any thread. Lockable, so std::lock_guard,
/// std::unique_lock and std::scoped_lock work with it.
class SpinLock {
 public:
  void lock() noexcept {
    // acquire: pairs with the release in unlock(), so the previous holder's writes to
    // the state this lock guards are visible to us.
    if (!held_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }
  bool try_lock() noexcept {
    // relaxed pre-check: only avoids a needless RMW; the exchange (acquire) decides.
    return !held_.load(std::memory_order_relaxed) && !held_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept {
    // release: publishes what we changed under the lock to the next holder. Nothing
    // touches the lock after this store, so the next holder may destroy it at once.
    held_.store(false, std::memory_order_release);
  }

 private:
  void lock_slow() noexcept {
    Backoff b;
    for (;;) {
      // relaxed: we only wait for the lock to look free; the exchange (acquire) takes
      // it. Reading rather than exchanging keeps the cache line shared while we wait.
      while (held_.load(std::memory_order_relaxed)) b.pause();
      if (!held_.exchange(true, std::memory_order_acquire)) return;
    }
  }
  std::atomic<bool> held_{false};
};

}  // namespace spindle::detail
