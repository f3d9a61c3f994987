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
/// begin of its own, at a fresh reading. Which wake-up readied t is not recorded: the
/// writer pairs it with this begin (trace_writer.hpp, "Flows"), so the waker never
/// touches t's frame.
inline void trace_step_begin_inline(Worker* w, TraceRing* r, TaskHeader* t, bool first) noexcept {
  const uint64_t flags = first ? kBeginFirst : 0;
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
    if (k >= TraceKind::next_wait) {  // the suspension's place, then the begin's word
      r->push(3, w0, trace_where(w->trace_note.where), reinterpret_cast<uintptr_t>(t));
    } else {
      r->push(2, w0, reinterpret_cast<uintptr_t>(t));
    }
    return;
  }
  if (named) [[unlikely]]
    return trace_step_begin_named(w, r, t, first);
  r->push(2, trace_word0(TraceKind::step_begin, trace_clock(), flags), reinterpret_cast<uintptr_t>(t));
}

/// t was spawned on rt by the calling thread (w: its loop, null for a foreign thread).
/// Inline in the spawn path: a loop's spawn is one word on its ring.
inline void trace_spawn(RuntimeImpl* rt, Worker* w, TaskHeader* t) noexcept {
  if (!w) [[unlikely]]
    return trace_spawn_foreign(rt, t);
  if (TraceRing* r = w->tracing()) {
    w->trace_not_straight();  // (a spawn between steps) a step's end noted goes first
    // One word: the task in place of the time, which is the loop's previous event's
    // (no later than the spawn; a spawn inside a step: its begin or later).
    r->push(1, reinterpret_cast<uintptr_t>(t) << kTraceTsShift | uint64_t(TraceKind::spawn));
  }
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
