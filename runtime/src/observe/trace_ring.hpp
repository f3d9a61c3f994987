// The execution trace's per-loop buffer: a fixed ring of 8-byte words holding
// variable-size events, written by its loop only and read by the trace's writer thread
// (trace_recorder.hpp, trace_writer.hpp).
//
// Single producer, single consumer, no lock: the owner fills an event's words and
// publishes them by advancing `head_` (release); the writer reads up to the head it
// loaded (acquire) and hands the words back by advancing `tail_` (release), which the
// owner loads (acquire) only when the ring looks full, before reusing them. A full ring
// drops the event, counts it and puts a `gap` before the next event it keeps: a loop never
// waits for the writer, and a trace of a long-running server takes a fixed amount of
// memory (kWords * 8 bytes per loop).
//
// Event format. Word 0: bits 0-5 the kind (TraceKind), bits 6-7 two flag bits whose
// meaning depends on the kind, bits 8-63 the low 56 bits of trace_clock() (the writer
// restores the high bits from the ring's previous event: 2^55 ticks are months) but in
// a spawn and a gap, which carry no time. The words that follow:
//   step_begin  task key; flags & 1: the fibre's first step
//   name        a step_begin (same flags and words) followed by the task's name: one word
//               holding its length (<= kTraceNameMax), then the bytes in whole words
//   next, next_returned, next_wait, next_timed_wait, next_yield
//               the loop's open step ends (neither returned nor suspended; returned;
//               suspended, the wait's kind by the kind of event, and then where, as in
//               `suspended`) and a step begins, at one time: a step_begin's flags and
//               words follow
//   step_end    flags: 1 the body returned, 0 neither returned nor suspended
//   suspended   a step's end at a suspension; flags: SuspendKind; then where, the
//               std::source_location itself (one pointer to its static record)
//   wake        the woken task; flags: WakeSource
//   spawn       one word: bits 8-63 hold the new task's key; its time is the ring's
//               previous event's
//   gap         one word: events were dropped just before; its time is the next event's
//   any other   a, then u32 | b16 << 32 | b8 << 48 (see TraceKind)
// Steps and wake-ups, 95% of what a busy program records, take 8 to 24 bytes. Which
// wake-up readied a step is not on the ring: the writer pairs each wake-up with the
// woken task's next begin (trace_writer.hpp, "Flows").
//
// Times. A step's end reads the clock, and the loop keeps the end to itself until it
// knows what comes next: if it goes straight to its next task (from its own run queue
// or LIFO slot, with no timer, reactor or global turn, no search, nothing else
// recorded), the end and that task's begin are one `next` event at the end's reading,
// so the loop's own work between two steps counts in the second; otherwise the end is
// written on its own before whatever comes next, and the begin reads the clock. A
// wake-up and the loop's other events read the clock. A spawn has the time of the event
// before it on the ring: earlier than the truth, never later, and inside the spawning
// step when it has one (its begin's time or later). A wake-up's reading is never later
// than the begin of the step it readies, which the writer relies on to pair them: a
// task taken straight from the loop's own queue was queued by this loop, before the end
// whose reading its begin takes; any other way to a task reads the clock afresh.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <source_location>
#include <type_traits>

#include <spindle/detail/deadline.hpp>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace spindle::detail {

enum class TraceKind : uint8_t {
  step_begin,   // a: task, b8: 1 = first step (decoded: b, the flow id the writer paired it with, 0: none)
  step_end,     // a: task, b8: 1 = the body returned (the task ended)
  name,         // on the ring: a named step_begin; decoded: the step_begin, then the name
  suspend,      // a: file (static string), b: function (static string), u32: line, b8: SuspendKind;
                // decoded just before the step_end of the step it ends, with the same time
  wake,         // a: woken task, b8: WakeSource (decoded: b, the flow id the writer gave it)
  spawn,        // a: the new task (on the ring: no time, the previous event's)
  steal,        // b16: the loop stolen from, u32: tasks taken (b8 = 0) or events (b8 = 1)
  park_begin,   // a: timeout in ns (-1: none), b8: park reason bits (kPark*)
  park_end,     // u32: reactor events that ended it
  poll,         // u32: reactor events handled by a poll that does not park
  timer_fired,  // a: the woken task (0: a callback timer)
  job_begin,    // a: what runs (static string)
  job_end,      //
  gap,          // on the ring only: events were dropped just before the next one (its time)
  suspended,    // on the ring only: a step_end with the suspend before it (see the format)
  // On the ring only: a step's end and the next step's begin at one time (see the
  // format): the end neither returned nor suspended, returned, or suspended (one kind
  // per SuspendKind, in its order).
  next,
  next_returned,
  next_wait,
  next_timed_wait,
  next_yield,
};
enum class WakeSource : uint8_t { task, timer, fd, foreign };
enum class SuspendKind : uint8_t { wait, timed_wait, yield };
inline constexpr uint8_t kParkTimer = 1, kParkFd = 2, kParkIoWatch = 4;
// Word 0's bits (see the format above).
inline constexpr uint64_t kTraceKindMask = 0x3F;
inline constexpr unsigned kTraceFlagsShift = 6, kTraceTsShift = 8;
inline constexpr uint64_t kBeginFirst = 1;
inline constexpr uint64_t kEndReturned = 1;
inline constexpr std::size_t kTraceNameMax = 48;  // bytes of a task's name kept per step

/// The trace's clock: the time-stamp counter where there is one (18 ns to read on the
/// 2-core VM this was measured on, against 33 ns for clock_gettime), mapped to
/// nanoseconds by the writer from two readings of both clocks, at the start and at the
/// end of the recording; elsewhere monotonic_ns().
inline int64_t trace_clock() noexcept {
#if defined(__x86_64__)
  return int64_t(__rdtsc());
#else
  return monotonic_ns();
#endif
}

// A suspension point is recorded as its std::source_location, copied as it is: one
// pointer to a record in static storage (file, function, line), valid for as long as the
// program runs, which the writer reads back when it formats the trace.
static_assert(sizeof(std::source_location) == 8 && std::is_trivially_copyable_v<std::source_location>);
inline uint64_t trace_where(const std::source_location& where) noexcept { return std::bit_cast<uint64_t>(where); }
inline std::source_location trace_where(uint64_t w) noexcept { return std::bit_cast<std::source_location>(w); }

/// Word 0 of an event.
inline uint64_t trace_word0(TraceKind k, int64_t ts, uint64_t flags = 0) noexcept {
  return uint64_t(ts) << kTraceTsShift | flags << kTraceFlagsShift | uint64_t(k);
}

/// An event decoded (the writer's form; also what the side channel holds).
struct TraceEvent {
  int64_t ts;  // trace_clock()
  TraceKind kind;
  uint8_t b8;
  uint16_t b16;
  uint32_t u32;
  uint64_t a, b;
};

class TraceRing {
 public:
  static constexpr uint64_t kWords = uint64_t(1) << 20;  // 8 MiB
  static constexpr uint64_t kMask = kWords - 1;
  // The writer takes whole pages while the recording runs (trace_writer.cpp).
  static constexpr uint64_t kPageWords = 4096 / 8;

  TraceRing() {
    void* p = nullptr;
    if (::posix_memalign(&p, 4096, kWords * 8) != 0) throw std::bad_alloc();
    buf_ = static_cast<uint64_t*>(p);
  }
  ~TraceRing() { std::free(buf_); }
  TraceRing(const TraceRing&) = delete;
  TraceRing& operator=(const TraceRing&) = delete;

  /// Owner: appends one event, its first n of the words given (w0 is its word 0), or
  /// drops it (counted; the next event kept is preceded by a `gap` event). Returns
  /// whether it was kept. Inline: one comparison, the words' stores straight from
  /// registers (an array on the stack copied in would cost a failed store-to-load
  /// forwarding per event) and the head's.
  template <class... W>
  bool push(uint32_t n, uint64_t w0, W... ws) noexcept {
    // The words past n, if any, are free ones (below limit_) the next event rewrites.
    if (push_inline(n, w0, ws...)) [[likely]]
      return true;
    return push_cold(n, w0, uint64_t(ws)...);
  }
  /// push's fast path alone: false, with nothing done, where push would go out of line
  /// (then push the same event), so that a caller can keep that call off its own fast
  /// path too.
  template <class... W>
  bool push_inline(uint32_t n, uint64_t w0, W... ws) noexcept {
    constexpr uint32_t N = 1 + sizeof...(W);
    const uint64_t h = head_pos_;
    if (h + N > limit_) [[unlikely]]
      return false;
    uint64_t* d = buf_ + (h & kMask);
    d[0] = w0;
    uint32_t i = 1;
    ((d[i++] = uint64_t(ws)), ...);
    publish(h + n);
    return true;
  }
  /// push for an event held in an array (long ones: a named step's begin).
  template <uint32_t N>
  bool push_array(const uint64_t (&w)[N], uint32_t n) noexcept {
    const uint64_t h = head_pos_;
    if (h + N > limit_) return push_slow(w, n);
    uint64_t* d = buf_ + (h & kMask);
    for (uint32_t i = 0; i < N; ++i) d[i] = w[i];
    publish(h + n);
    return true;
  }

  // The writer's side. Positions count words since the ring was made.
  /// The published end (acquire: pairs with publish's release).
  uint64_t head() const noexcept { return head_.load(std::memory_order_acquire); }
  uint64_t tail() const noexcept { return tail_.load(std::memory_order_relaxed); }  // only the writer writes it
  /// The words in [tail(), to) have been read: the owner may reuse them.
  void release(uint64_t to) noexcept { tail_.store(to, std::memory_order_release); }  // release: our reads are done
  /// The word at position p (in [tail(), head())).
  const uint64_t* at(uint64_t p) const noexcept { return buf_ + (p & kMask); }
  /// At the start of a session: forgets what is left from an earlier one (a loop that
  /// saw tracing on just as it was stopped). Returns the position the session starts at.
  uint64_t reset() noexcept {
    const uint64_t h = head();
    release(h);
    return h;
  }
  uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  void publish(uint64_t h) noexcept {
    head_pos_ = h;
    // release: the words are visible to the writer that loads the new head.
    head_.store(h, std::memory_order_release);
  }
  // push's way to push_slow: the words in registers, so that a caller whose push is its
  // last act can jump here (no frame of its own for the words).
  template <class... W>
  __attribute__((noinline, cold)) bool push_cold(uint32_t n, W... ws) noexcept {
    const uint64_t w[sizeof...(W)] = {ws...};
    return push_slow(w, n);
  }
  // Near the ring's end, near the writer's tail, or after a drop. Out of line, so that
  // the fast path saves no registers for it.
  __attribute__((noinline, cold)) bool push_slow(const uint64_t* w, uint32_t n) noexcept {
    const uint64_t h = head_pos_;
    const uint32_t need = n + (gap_ ? 1 : 0);
    // acquire: the writer has finished reading the words it handed back.
    const uint64_t tail = tail_.load(std::memory_order_acquire);
    if (h + need - tail > kWords) {
      // Single writer: a plain load and store (relaxed: a counter read at the end).
      dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      gap_ = true;
      limit_ = 0;  // the next event comes here too, to be preceded by the gap
      return false;
    }
    uint64_t p = h;
    if (gap_) buf_[p++ & kMask] = uint64_t(TraceKind::gap);  // no time: the next event's
    for (uint32_t i = 0; i < n; ++i) buf_[p++ & kMask] = w[i];
    gap_ = false;
    // The fast path may write up to the writer's tail and up to the ring's end,
    // whichever comes first (an event that would wrap around comes here).
    limit_ = std::min(tail + kWords, (p | kMask) + 1);
    publish(p);
    return true;
  }

  alignas(64) std::atomic<uint64_t> head_{0};
  // The owner's own: the head, how far the fast path may write, a drop not yet said.
  uint64_t head_pos_ = 0, limit_ = 0;
  bool gap_ = false;
  std::atomic<uint64_t> dropped_{0};  // owner writes, writer reads
  alignas(64) std::atomic<uint64_t> tail_{0};
  uint64_t* buf_ = nullptr;
};

}  // namespace spindle::detail
