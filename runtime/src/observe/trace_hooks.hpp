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

/// A step of t begins on w, which owns r (first: its fibre's first step). Its time is
/// the previous step's end when w went straight from that one to this one
/// (Worker::trace_straight), else a fresh reading.
inline void trace_step_begin_inline(Worker* w, TraceRing* r, TaskHeader* t, bool first) noexcept {
  // relaxed: see Worker::trace_straight.
  int64_t ts;
  if (w->trace_straight.load(std::memory_order_relaxed)) {
    ts = w->trace_ts;
    w->trace_straight.store(false, std::memory_order_relaxed);
  } else {
    ts = trace_clock();
  }
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
  // A task with an Extra may have a name, read under its lock. Whether it has one is
  // kHasExtra (relaxed: an Extra made meanwhile by another thread, set_name say, shows at
  // a later step), not t->extra(): aux_ is also the waiter list, which a waiter on
  // another thread may be linking itself into, under the lock, meanwhile.
  if (t->word.load(std::memory_order_relaxed) & kHasExtra) [[unlikely]] {
    t->lock();
    return trace_step_begin_named(r, ts, t, first, flow);  // unlocks t
  }
  r->push(flow ? 3 : 2, trace_word0(TraceKind::step_begin, ts, (first ? kBeginFirst : 0) | (flow ? kBeginFlow : 0)),
          reinterpret_cast<uintptr_t>(t), flow);
}

/// The running task of w is about to suspend at `where`: noted, and written with its
/// step's end (one clock reading for both).
inline void trace_suspend(Worker* w, std::source_location where, SuspendKind kind) noexcept {
  w->trace_note = {where, w->yielding ? SuspendKind::yield : kind, true};
}

/// The step running on w, which owns r, ends (ended: its body returned); with the
/// suspension trace_suspend noted, if any, under the same clock reading.
inline void trace_step_end_inline(Worker* w, TraceRing* r, bool ended) noexcept {
  const int64_t ts = trace_clock();
  // For the next step's begin, if the loop goes straight to it (relaxed: see
  // Worker::trace_straight).
  w->trace_ts = ts;
  w->trace_straight.store(true, std::memory_order_relaxed);
  if (std::exchange(w->trace_note.pending, false)) {
    r->push(2, trace_word0(TraceKind::suspended, ts, uint64_t(w->trace_note.kind)), trace_where(w->trace_note.where));
  } else {
    r->push(1, trace_word0(TraceKind::step_end, ts, ended ? kEndReturned : 0));
  }
}

}  // namespace spindle::detail
