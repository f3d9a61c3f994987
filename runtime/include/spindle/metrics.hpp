// Runtime::metrics(): a snapshot of what the scheduler has been doing, cheap enough to
// leave on (tokio's RuntimeMetrics, asyncio has none).
//
// Every counter is kept by the worker that owns it (a plain increment, never a shared
// atomic read-modify-write or a lock on the hot path) and read without stopping anyone,
// so a snapshot is not taken at one instant: counters read a moment apart may disagree
// by the work done meanwhile (e.g. completed + live may differ from spawned briefly).
//
// A library built with metrics compiled out (meson -Dmetrics=false) keeps only uptime,
// live_tasks, spawned, the queue lengths, blocking_* and stacks_made (and each worker's
// index, timers_pending, local_queue and inbox): every other field reads 0.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace spindle {

/// One worker (event loop).
struct WorkerMetrics {
  unsigned index = 0;
  /// Task steps run: each time the loop switched into a task (a task that yields 10
  /// times counts 11), tasks dequeued only to be cancelled before their start included.
  uint64_t tasks_run = 0;
  uint64_t tasks_started = 0;   ///< fibres started here
  uint64_t steal_attempts = 0;  ///< other loops' queues probed while searching
  uint64_t steals = 0;          ///< probes that took tasks
  uint64_t tasks_stolen = 0;    ///< tasks those probes took
  uint64_t io_steals = 0;       ///< polls of another running loop's epoll that found events
  /// Tasks moved out of its full run queue into the global queues (woken ones into the
  /// queue that workers take from first, new ones to the back of the global queue).
  uint64_t tasks_spilled = 0;
  uint64_t parks = 0;           ///< times the loop went to sleep (on a futex, or in epoll if it watches fds)
  uint64_t reactor_events = 0;  ///< epoll events handled (eventfd wake-ups included)
  uint64_t timers_fired = 0;    ///< timers (sleeps, timeouts, call_later) fired here
  /// Timers in its heap now: armed ones, and cancelled ones not dropped yet (they go when
  /// they reach the top, or in a sweep once a sample shows a quarter of them cancelled).
  std::size_t timers_pending = 0;
  std::size_t local_queue = 0;       ///< tasks in its run queue now
  std::size_t inbox = 0;             ///< tasks handed to it by other threads, not taken yet
  bool idle = false;                 ///< searching for work or parked now
  std::chrono::nanoseconds busy{0};  ///< time not spent searching for work or parked
};

struct Metrics {
  std::chrono::nanoseconds uptime{0};  ///< since the runtime started
  std::vector<WorkerMetrics> workers;
  uint64_t live_tasks = 0;       ///< spawned and not ended (queued, running or suspended)
  uint64_t spawned = 0;          ///< tasks submitted to the runtime
  uint64_t completed = 0;        ///< tasks that ended with a result or an exception
  uint64_t failed = 0;           ///< of completed: ended with an exception
  uint64_t cancelled = 0;        ///< tasks that ended cancelled (started or not)
  std::size_t global_queue = 0;  ///< tasks in the global queues now (new and spilled)
  /// The blocking pool behind to_thread (0 until its first use).
  std::size_t blocking_threads = 0, blocking_busy = 0, blocking_queue = 0;
  /// Fibre stacks in use now (one per started, unfinished task; a task that shutdown
  /// abandoned counts as ended, though its stack stays mapped: see Runtime::shutdown).
  std::size_t stacks_in_use = 0;
  /// The highest stacks_in_use seen: sampled by a loop that starts fibres at most every
  /// 256 of its turns, whenever a loop goes idle and at every snapshot, so a short peak
  /// between samples may be missed. stacks_made bounds the true peak from above.
  std::size_t stacks_high_water = 0;
  /// Default-size stacks carved from slabs so far (in use, cached or free).
  std::size_t stacks_made = 0;
};

/// A human-readable rendering, one "key value" per line (the console's `stats`).
std::string to_string(const Metrics& m);
std::ostream& operator<<(std::ostream& os, const Metrics& m);

}  // namespace spindle
