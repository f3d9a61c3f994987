// One loop's timers: a 4-ary min-heap of deadlines with O(1) lazy cancellation.
//
// Layout: each heap slot holds the deadline beside the entry pointer, so sifting compares
// keys inside the array and never loads an entry (with 100k timers the entries are cold:
// a load per level was a cache miss per level). Four children share a 64-byte stretch,
// which halves the levels of a binary heap for the same loads.
//
// A TimerEntry is shared (reference-counted) between the heap and whoever may cancel it:
// cancel() only flips its state from armed to cancelled (and drops the callback), from
// any thread, and the heap drops the entry when it reaches the top, or in a sweep: every
// size/2 pushes a sample of 16 entries is looked at, and a quarter of them cancelled
// starts one, so cancelled entries stay about a third as many as armed ones at most.
// Firing flips armed to fired; exactly one of fire and cancel wins.
//
// Reused wake entries (a task's timed waits, see `want`): a task keeps the entry of its
// last timed wait in its frame, and its next timed wait whose deadline is no earlier
// than the entry's key takes it again instead of arming a new one (an idle timeout
// renewed at every request would otherwise allocate, push and cancel an entry per
// request). So an entry may reach the top before the deadline of the wait that uses it:
// fire_due then moves it to that deadline, or drops it if no wait uses it any more, and
// fires only an entry whose wait is due (as Go's runtime leaves a timer modified to a
// later time in its heap until it comes due).
//
// Threads: the heap belongs to its worker. Other threads hand new entries to the worker
// through its timer inbox (Worker::timer_inbox), never touching the heap.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include <spindle/detail/task_header.hpp>

namespace spindle::detail {

class RuntimeImpl;

struct TimerEntry {
  enum : uint8_t { armed, fired, cancelled };
  // `want` of a wake entry: kRetired once the heap dropped it, kMoving while the heap
  // moves it to a later deadline.
  static constexpr int64_t kRetired = -1, kMoving = -2;
  // CLOCK_MONOTONIC ns: the heap key. Written by the heap's owner only while `want` is
  // kMoving (a wake entry moved to a later deadline); read by the task only while no wait
  // uses the entry (want 0), which the release store ending kMoving orders after it.
  int64_t deadline;
  // Wake entries (`task` set): the deadline of the timed wait of `task` that uses this
  // entry, or 0 while none does. The task moves it 0 -> D when a wait takes the entry and
  // D -> 0 when that wait ends; the heap's owner moves it 0 -> kRetired (drops an entry
  // no wait uses) or D -> kMoving -> D (moves it to D). A task that finds kMoving when
  // its wait ends gives the entry up (cancels it) instead of waiting for the move.
  std::atomic<int64_t> want{0};
  std::atomic<uint32_t> refs{1};
  std::atomic<uint8_t> state{armed};
  TaskHeader* task = nullptr;      // woken when it fires (holds a reference), or
  std::function<void()> callback;  // run in a task of its own when it fires

  /// armed -> cancelled. False if it already fired (or was cancelled). Any thread.
  /// The winner also releases the callback and what it captured at once (as asyncio's
  /// Handle.cancel drops its references): the entry itself may stay in its heap until
  /// it reaches the top or a sweep. Only the winner of fire/cancel ever reads `callback`.
  bool cancel() noexcept {
    uint8_t s = armed;
    // acq_rel: the winner of fire/cancel is decided here; pairs with fire's CAS.
    if (!state.compare_exchange_strong(s, cancelled, std::memory_order_acq_rel)) return false;
    if (callback) callback = nullptr;
    return true;
  }
  bool has_fired() const noexcept { return state.load(std::memory_order_acquire) == fired; }
  void ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }  // needs an existing ref
  void unref() noexcept;  // acq_rel; the last one frees (and drops the task reference)
};

class TimerHeap {
 public:
  ~TimerHeap();
  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  /// size() for other threads (metrics): kept by the owner after each change.
  std::size_t size_seen() const noexcept { return size_seen_.load(std::memory_order_relaxed); }
  void push(TimerEntry* e);  // takes over one reference
  /// Cancels every entry and drops the heap's references (a stopped loop's timers).
  void cancel_all() noexcept;
  /// Earliest armed deadline, or INT64_MAX. Drops cancelled entries from the top.
  int64_t next_deadline() noexcept;
  /// Fires every armed entry due at `now` (in deadline order): calls on_fire(e) for each
  /// one it won the armed->fired transition for, then drops its reference.
  template <class F>
  void fire_due(int64_t now, F&& on_fire) {
    while (!heap_.empty() && heap_.front().deadline <= now) {
      TimerEntry* e = pop_top();
      if (e->task && moved_or_dropped(e, now)) continue;  // a reused wake entry not due yet
      uint8_t s = TimerEntry::armed;
      if (e->state.compare_exchange_strong(s, TimerEntry::fired, std::memory_order_acq_rel)) on_fire(e);
      e->unref();
    }
  }

 private:
  TimerEntry* pop_top() noexcept;
  /// A wake entry just popped, due by its key: true if it was put back at the later
  /// deadline of the wait that uses it, or dropped because no wait does; false if that
  /// wait is due (fire it).
  bool moved_or_dropped(TimerEntry* e, int64_t now) noexcept;
  struct Slot {
    int64_t deadline;  // a copy of e->deadline (which never changes once pushed)
    TimerEntry* e;
  };
  static constexpr std::size_t kArity = 4;
  void sift_up(std::size_t i) noexcept;
  void sift_down(std::size_t i) noexcept;
  void maybe_sweep() noexcept;  // sweep() if a sample of the entries says it is worth it
  void sweep() noexcept;        // drops every cancelled entry and rebuilds the heap
  std::vector<Slot> heap_;
  std::size_t pushes_since_look_ = 0;
  uint32_t probe_shift_ = 0;
  // relaxed: a single writer (the owner) and a reader that only wants a recent value.
  std::atomic<std::size_t> size_seen_{0};
  void note_size() noexcept { size_seen_.store(heap_.size(), std::memory_order_relaxed); }
};

int64_t monotonic_ns() noexcept;

}  // namespace spindle::detail
