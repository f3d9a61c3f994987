// The execution trace (Options::trace, Runtime::start_trace / stop_trace): what the
// scheduler records, and how recording is switched on and off.
//
// Recording: each loop writes events into its own TraceRing (trace_ring.hpp) without a
// lock: task steps (begin, end, the task's name), suspensions (kind of wait, file:line),
// wake-ups (who woke whom: a flow id joins the waker's event to the woken task's next
// step), spawns, steals, parks (with their reason), reactor polls and timers fired.
// Threads outside the loops (a future completed by a plain thread, blocking-pool and
// process-pool jobs) record through the session's side channel under a mutex: they are
// off the hot paths. One writer thread (trace_writer.hpp) drains the rings every few
// milliseconds and writes Chrome's trace event format (JSON). A full ring drops events
// and counts them; the counts go into the trace's metadata.
//
// Cost when off: each hook in a loop tests its loop's ring pointer (Worker::tracing(),
// one load and a predictable branch); the wake-up and spawn hooks, which may run on any
// thread, test the process-wide count of tracing runtimes (trace_any()). Built with
// -Dtrace=false (SPINDLE_TRACE=0), every hook is compiled out and start_trace throws.
//
// Threads: start and stop run on any thread, serialised by RuntimeImpl::trace_mu, which
// also keeps the session alive for the side channel's writers.
#pragma once

#include <atomic>
#include <cstdint>
#include <source_location>
#include <string>

#include "observe/trace_ring.hpp"

#ifndef SPINDLE_TRACE
#define SPINDLE_TRACE 1
#endif

namespace spindle::detail {

inline constexpr bool kTrace = SPINDLE_TRACE != 0;

struct Worker;
struct TaskHeader;
class RuntimeImpl;

/// Runtimes of this process that record a trace now. relaxed: a hint that gates the
/// hooks off the loops' own rings; the hook itself then checks its runtime's session
/// under its mutex. Hidden: the library is compiled position-independent, and a hidden
/// variable is read with one instruction instead of a load through the GOT first.
extern std::atomic<int> g_trace_sessions __attribute__((visibility("hidden")));
inline bool trace_any() noexcept {
  if constexpr (kTrace)
    return g_trace_sessions.load(std::memory_order_relaxed) != 0;
  else
    return false;
}

// Hooks, each called once its caller has found tracing on (out of line: the hot paths
// keep only the test).
// (A step's begin and end, and a suspension: trace_hooks.hpp, inline.)
/// A step of t, which has an Extra (it may have a name), begins on w, which owns r
/// (after the step end w noted, if any: see trace_step_begin_inline).
void trace_step_begin_named(Worker* w, TraceRing* r, TaskHeader* t, bool first) noexcept;
/// t (started, suspended) was just made QUEUED by the calling thread: records who woke
/// it (the writer joins that to t's next step) and makes it ready on rt.
void trace_wake(RuntimeImpl* rt, TaskHeader* t, bool lifo) noexcept;
/// t was spawned on rt by a thread that is not one of its loops (a loop's spawn:
/// trace_spawn in trace_hooks.hpp).
void trace_spawn_foreign(RuntimeImpl* rt, TaskHeader* t) noexcept;
/// The step end w noted (Worker::trace_straight) goes on its ring, if it still records.
void trace_end_out(Worker* w) noexcept;
/// Any other event of w, which owns r (see TraceKind for what a, b, b8, b16 and u32 mean).
void trace_event(Worker* w, TraceRing* r, TraceKind k, uint64_t a = 0, uint32_t u32 = 0, uint16_t b16 = 0,
                 uint8_t b8 = 0) noexcept;
/// A job (blocking pool, process pool) begins or ends on the calling thread.
void trace_job(RuntimeImpl* rt, const char* what, bool begin) noexcept;

/// Starts recording rt's trace into the file at `path` (made or truncated). Throws
/// RuntimeError naming the problem: a trace already recording, a runtime shut down, a
/// path that cannot be opened, tracing compiled out.
void trace_start(RuntimeImpl* rt, const std::string& path);
/// Stops recording and finishes the file (a valid JSON document). Nothing if none runs.
/// Returns 0, or the errno of the first write that failed, with `what` naming the
/// operation and the path (the file is then incomplete).
int trace_stop(RuntimeImpl* rt, std::string& what) noexcept;
/// trace_stop for the runtime's own paths (shutdown, a start that failed): a failed
/// write goes to Options::report (Report::Kind::trace_failed).
void trace_stop_reporting(RuntimeImpl* rt) noexcept;

}  // namespace spindle::detail
