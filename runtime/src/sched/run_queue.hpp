// A worker's local run queue: a fixed ring of task pointers. The owner pushes at the tail
// and pops at the head (FIFO); other workers steal half of it from the head.
//
// Ownership: `tail_` is written only by the owner. `head_` is advanced by CAS, by the
// owner's pop and by thieves, so whoever wins the CAS owns the slots it skipped.
// A slot is only rewritten by the owner, at `tail`, and only while tail - head < kCap;
// so a thief that read slots [h, h+n) and then wins CAS(head: h -> h+n) read slots the
// owner had not reused (the indices it may write are in [old tail, h + kCap)).
// Slots are atomics (relaxed) so that a thief's read that loses the race is not a
// data race in C++ terms; its value is simply discarded.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include <spindle/detail/task_header.hpp>

namespace spindle::detail {

class RunQueue {
 public:
  static constexpr uint32_t kCap = 256;
  static constexpr uint32_t kMask = kCap - 1;

  /// Owner only. Returns false when full (the caller moves half out to the global queue).
  bool push(TaskHeader* t) noexcept {
    const uint32_t tail = tail_.load(std::memory_order_relaxed);
    // acquire: pairs with a thief's CAS (acq_rel) on head, so its reads of the slots it
    // took happen before we overwrite them.
    const uint32_t head = head_.load(std::memory_order_acquire);
    if (tail - head >= kCap) return false;
    slots_[tail & kMask].store(t, std::memory_order_relaxed);
    // release: publishes the slot to thieves that acquire-load tail.
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  /// Owner only: takes up to half of the queue (oldest first) into `out` so it can be
  /// moved to the global queue. Returns how many were taken.
  uint32_t take_half(TaskHeader** out) noexcept {
    for (;;) {
      uint32_t head = head_.load(std::memory_order_acquire);
      const uint32_t tail = tail_.load(std::memory_order_relaxed);
      const uint32_t n = (tail - head) / 2;
      if (n == 0) return 0;
      for (uint32_t i = 0; i < n; ++i) out[i] = slots_[(head + i) & kMask].load(std::memory_order_relaxed);
      // acq_rel: as in steal_into.
      if (head_.compare_exchange_strong(head, head + n, std::memory_order_acq_rel, std::memory_order_acquire)) return n;
    }
  }

  /// Owner only.
  TaskHeader* pop() noexcept {
    uint32_t head = head_.load(std::memory_order_acquire);
    for (;;) {
      const uint32_t tail = tail_.load(std::memory_order_relaxed);
      if (head == tail) return nullptr;
      TaskHeader* t = slots_[head & kMask].load(std::memory_order_relaxed);
      // acq_rel: competes with thieves for the slot; the winner owns it.
      if (head_.compare_exchange_weak(head, head + 1, std::memory_order_acq_rel, std::memory_order_acquire)) return t;
    }
  }

  /// Owner only, and only while no thief can exist (a runtime with one worker: nobody
  /// else steals, and the other readers only look at the indices): pop() without its
  /// CAS, which is a locked instruction and most of a yield's cost on one worker.
  TaskHeader* pop_alone() noexcept {
    const uint32_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_.load(std::memory_order_relaxed)) return nullptr;
    TaskHeader* t = slots_[head & kMask].load(std::memory_order_relaxed);
    // release: as a won CAS in pop() would, so that size()/empty() readers (hints) and
    // push() keep their pairing.
    head_.store(head + 1, std::memory_order_release);
    return t;
  }

  /// Thief (any other worker): moves half of this queue into `dst` (which the calling
  /// thread owns and which must be empty) and returns one more task to run now, or null.
  TaskHeader* steal_into(RunQueue& dst) noexcept {
    TaskHeader* buf[kCap / 2 + 1];
    uint32_t n;
    for (;;) {
      uint32_t head = head_.load(std::memory_order_acquire);
      // acquire: pairs with the owner's release store of tail, so the slots below
      // [head, tail) hold the pointers the owner wrote.
      const uint32_t tail = tail_.load(std::memory_order_acquire);
      const uint32_t len = tail - head;
      if (len == 0 || len > kCap) return nullptr;  // empty, or a torn read of head/tail
      n = len - len / 2;                           // half, rounded up: a queue of one is worth stealing
      for (uint32_t i = 0; i < n; ++i) buf[i] = slots_[(head + i) & kMask].load(std::memory_order_relaxed);
      // acq_rel: release orders our slot reads before the owner's reuse of them (it
      // acquire-loads head in push); acquire orders the next attempt's reads.
      if (head_.compare_exchange_strong(head, head + n, std::memory_order_acq_rel, std::memory_order_acquire)) break;
    }
    for (uint32_t i = 1; i < n; ++i) dst.push(buf[i]);  // dst is empty and n-1 < kCap
    return buf[0];
  }

  bool empty() const noexcept { return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire); }
  uint32_t size() const noexcept {
    return tail_.load(std::memory_order_acquire) - head_.load(std::memory_order_acquire);
  }

 private:
  alignas(64) std::atomic<uint32_t> head_{0};
  alignas(64) std::atomic<uint32_t> tail_{0};
  alignas(64) std::array<std::atomic<TaskHeader*>, kCap> slots_{};
};

}  // namespace spindle::detail
