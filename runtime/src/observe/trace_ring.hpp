// The execution trace's per-loop buffer: a fixed ring of 32-byte events, written by
// its loop only and read by the trace's writer thread (trace_recorder.hpp).
//
// Single producer, single consumer, no lock: the owner fills a slot and publishes it by
// advancing `head_` (release); the writer reads up to the head it loaded (acquire) and
// hands the slots back by advancing `tail_` (release), which the owner loads (acquire)
// before reusing them. A full ring drops the event and counts it: a loop never waits for
// the writer, and a trace of a long-running server takes a fixed amount of memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <spindle/detail/deadline.hpp>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace spindle::detail {

enum class TraceKind : uint8_t {
  step_begin,   // a: task, b: flow id of the wake-up that readied it (0: none), b8: 1 = first step
  step_end,     // a: task, b8: 1 = the body returned (the task ended)
  name,         // a, b: 16 bytes of the task's name; b16: chunk index; u32: the name's length
  suspend,      // a: file (static string), b: function (static string), u32: line, b8: SuspendKind;
                // just before the step_end of the step it ends, with the same time
  wake,         // a: woken task, b: flow id, b8: WakeSource
  spawn,        // a: the new task
  steal,        // b16: the loop stolen from, u32: tasks taken (b8 = 0) or events (b8 = 1)
  park_begin,   // a: timeout in ns (-1: none), b8: park reason bits (kPark*)
  park_end,     // u32: reactor events that ended it
  poll,         // u32: reactor events handled by a poll that does not park
  timer_fired,  // a: the woken task (0: a callback timer)
  job_begin,    // a: what runs (static string)
  job_end,      //
};
enum class WakeSource : uint8_t { task, timer, fd, foreign };
enum class SuspendKind : uint8_t { wait, timed_wait, yield };
inline constexpr uint8_t kParkTimer = 1, kParkFd = 2, kParkIoWatch = 4;

/// The trace's clock: the time-stamp counter where there is one (13 ns to read on the
/// 2-core VM this was measured on, against 40 ns for clock_gettime), mapped to
/// nanoseconds by the writer from two readings of both clocks, at the start and at the
/// end of the recording; elsewhere monotonic_ns().
inline int64_t trace_clock() noexcept {
#if defined(__x86_64__)
  return int64_t(__rdtsc());
#else
  return monotonic_ns();
#endif
}

struct TraceEvent {
  int64_t ts;  // trace_clock()
  TraceKind kind;
  uint8_t b8;
  uint16_t b16;
  uint32_t u32;
  uint64_t a, b;
};
static_assert(sizeof(TraceEvent) == 32);

class TraceRing {
 public:
  static constexpr uint32_t kCap = 1u << 16;  // 65536 events, 2 MiB

  TraceRing() : buf_(new TraceEvent[kCap]) {}

  /// Owner: room for n events, or null (the n events are counted as dropped). The slots
  /// are published by commit(n).
  TraceEvent* reserve(uint32_t n = 1) noexcept {
    const uint64_t h = head_.load(std::memory_order_relaxed);  // only we write it
    if (h + n - tail_cache_ > kCap) {
      // acquire: the writer has finished reading the slots it handed back.
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (h + n - tail_cache_ > kCap) {
        // Single writer: a plain load and store (relaxed: a counter read at the end).
        dropped_.store(dropped_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
        return nullptr;
      }
    }
    return &buf_[h & (kCap - 1)];
  }
  /// The slot after `e` (reserve(n) gave room for n, which may wrap around the end).
  TraceEvent* next(TraceEvent* e) noexcept { return e + 1 == buf_.get() + kCap ? buf_.get() : e + 1; }
  void commit(uint32_t n = 1) noexcept {
    // release: the slots' contents are visible to the writer that loads the new head.
    head_.store(head_.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }

  /// Writer: calls f(first, count) for the published events, oldest first, in at most
  /// two contiguous runs (the ring wraps), then frees them. Returns how many there were.
  template <class F>
  std::size_t drain(F&& f) {
    const uint64_t h = head_.load(std::memory_order_acquire);  // acquire: pairs with commit
    const uint64_t t = tail_.load(std::memory_order_relaxed);  // only the writer writes it
    const std::size_t n = std::size_t(h - t);
    const std::size_t at = std::size_t(t & (kCap - 1));
    const std::size_t first = n < kCap - at ? n : kCap - at;
    if (first) f(&buf_[at], first);
    if (n > first) f(&buf_[0], n - first);
    tail_.store(h, std::memory_order_release);  // release: our reads are done
    return n;
  }
  /// Writer, at the start of a session: forgets what is left from an earlier one (a
  /// loop that saw tracing on just as it was stopped). Returns the drop count so far.
  uint64_t reset() noexcept {
    tail_.store(head_.load(std::memory_order_acquire), std::memory_order_release);  // as drain()
    return dropped();
  }
  uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  alignas(64) std::atomic<uint64_t> head_{0};
  uint64_t tail_cache_ = 0;           // owner's last look at tail_
  std::atomic<uint64_t> dropped_{0};  // owner writes, writer reads
  alignas(64) std::atomic<uint64_t> tail_{0};
  std::unique_ptr<TraceEvent[]> buf_;
};

}  // namespace spindle::detail
