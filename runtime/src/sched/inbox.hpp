// A loop's inbox: pinned tasks (or timers) that other threads hand to it. Multi-producer, single
// consumer (the owning worker), low volume, latency-sensitive: a short spinlock over a
// vector, plus an atomic count so that the owner's "anything there?" is one load.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include <spindle/detail/spin.hpp>
#include <spindle/detail/task_header.hpp>

namespace spindle::detail {

template <class T>
class BasicInbox {
 public:
  /// Any thread.
  void push(T t) {
    std::lock_guard g(lock_);
    items_.push_back(t);
    // release: pairs with the owner's acquire in empty(), so a non-zero count means the
    // item is there once the owner takes the lock.
    count_.fetch_add(1, std::memory_order_release);
  }
  /// Owner: moves everything into `out` (FIFO). Returns false if there was nothing.
  template <class Out>
  bool drain_into(Out& out) {
    if (empty()) return false;
    std::lock_guard g(lock_);
    for (T t : items_) out.push_back(t);
    const auto n = static_cast<uint32_t>(items_.size());
    items_.clear();
    count_.fetch_sub(n, std::memory_order_relaxed);  // under the lock: exact
    return n != 0;
  }
  bool empty() const noexcept { return count_.load(std::memory_order_acquire) == 0; }
  /// Items waiting, for metrics (relaxed: a count that may be a moment old). Any thread.
  std::size_t size() const noexcept { return count_.load(std::memory_order_relaxed); }

 private:
  SpinLock lock_;  // guards items_
  std::atomic<uint32_t> count_{0};
  std::vector<T> items_;
};

using Inbox = BasicInbox<TaskHeader*>;

}  // namespace spindle::detail
