// The execution trace's step hooks, inline for the loop's switch path (worker.cpp,
// fibre.cpp): a step's begin and end are most of what a busy program records, so the
// common case is at most one clock reading, a few stores into the loop's ring and no
// call (trace_recorder.hpp has the rest, out of line).
#pragma once

#include <atomic>
#include <utility>

#include "core/frame.hpp"
#include "observe/trace_recorder.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

/// A step of t begins on w, which owns r (first: its fibre's first step). When w went
/// straight to it from the step before (Worker::trace_straight), one event holds that
/// step's end, noted then, and this begin, at the end's clock reading; otherwise a
/// begin of its own, at a fresh reading.
inline void trace_step_begin_inline(Worker* w, TraceRing* r, TaskHeader* t, bool first) noexcept {
  uint64_t flow = 0;
  if (!first) {
    // relaxed: the waker stored it before pushing t; the queue hand-over that brought t
    // here orders that store before this load. A load and a store, not an exchange (a
    // locked instruction): no other waker stores until t is suspended again, since only
    // the wake that queues t records one.
    std::atomic<uint64_t>& f = t->frame->trace_flow;
    flow = f.load(std::memory_order_relaxed);
    if (flow) f.store(0, std::memory_order_relaxed);
  }
  const uint64_t flags = (first ? kBeginFirst : 0) | (flow ? kBeginFlow : 0);
  const uint32_t n = flow ? 3 : 2;
  // A task with an Extra may have a name, read under its lock. Whether it has one is
  // kHasExtra (relaxed: an Extra made meanwhile by another thread, set_name say, shows at
  // a later step), not t->extra(): aux_ is also the waiter list, which a waiter on
  // another thread may be linking itself into, under the lock, meanwhile.
  const bool named = t->word.load(std::memory_order_relaxed) & kHasExtra;
  // relaxed: see Worker::trace_straight.
  if (w->trace_straight.load(std::memory_order_relaxed) && !named) [[likely]] {
    w->trace_straight.store(false, std::memory_order_relaxed);
    const TraceKind k = w->trace_end;
    const uint64_t w0 = trace_word0(k, w->trace_ts, flags);
    if (k >= TraceKind::next_wait) {  // the suspension's place, then the begin's words
      r->push(n + 1, w0, trace_where(w->trace_note.where), reinterpret_cast<uintptr_t>(t), flow);
    } else {
      r->push(n, w0, reinterpret_cast<uintptr_t>(t), flow);
    }
    return;
  }
  if (named) [[unlikely]]
    return trace_step_begin_named(w, r, t, first, flow);
  r->push(n, trace_word0(TraceKind::step_begin, trace_clock(), flags), reinterpret_cast<uintptr_t>(t), flow);
}

/// The running task of w is about to suspend at `where`: noted, and written with its
/// step's end (one clock reading for both).
inline void trace_suspend(Worker* w, std::source_location where, SuspendKind kind) noexcept {
  w->trace_note = {where, w->yielding ? SuspendKind::yield : kind, true};
}

/// The step running on w ends (ended: its body returned), with the suspension
/// trace_suspend noted, if any: noted, at a fresh reading, and written with the next
/// step's begin or before whatever the loop records first (Worker::trace_straight).
inline void trace_step_end_inline(Worker* w, bool ended) noexcept {
  w->trace_ts = trace_clock();
  w->trace_end = std::exchange(w->trace_note.pending, false)
                     ? TraceKind(uint8_t(TraceKind::next_wait) + uint8_t(w->trace_note.kind))
                     : (ended ? TraceKind::next_returned : TraceKind::next);
  w->trace_straight.store(true, std::memory_order_relaxed);  // relaxed: see Worker::trace_straight
}

}  // namespace spindle::detail
