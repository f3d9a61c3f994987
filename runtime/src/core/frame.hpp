// TaskFrame: what a started task keeps on its own fibre stack (so that a task that has
// not started costs no more than its small heap object).
//
// Lifetime: made by the fibre's entry function when it first runs, destroyed when the
// body has ended, just before the final switch out. TaskHeader::frame points at it
// meanwhile. `ctx` is written by the worker after the fibre switched out and read by the
// worker that resumes it next; the hand-over is ordered by the task's state word.
#pragma once

#include <boost/context/fiber.hpp>

#include <atomic>
#include <cstdint>

#include <spindle/detail/task_header.hpp>

#include "core/stack_pool.hpp"

namespace spindle::detail {

class RegistryShard;
struct TimerEntry;

struct TaskFrame {
  boost::context::fiber ctx;   // the suspended fibre (empty while it runs)
  boost::context::fiber back;  // the worker context to switch back to (while it runs)
  TaskHeader* task = nullptr;
  RuntimeImpl* rt = nullptr;
  Stack stack;
  // The last suspension point. Written by the fibre, read by Task::where() on any
  // thread under the task's lock: relaxed atomics, so a torn triple is possible but
  // harmless (it is a diagnostic).
  std::atomic<const char*> where_file{nullptr};
  std::atomic<const char*> where_function{nullptr};
  std::atomic<uint32_t> where_line{0};
  // The execution trace: the flow id of the wake-up that readied this task, for its next
  // step (trace_recorder.hpp); 0 when none. Stored by the waker before it pushes the
  // task, taken by the loop that runs it (relaxed: the queue hand-over orders them).
  std::atomic<uint64_t> trace_flow{0};
  int64_t started_ns = 0;  // its loop's coarse clock when the fibre started (its age)
  // The timer entry of this task's last timed wait, kept for its next one (one reference;
  // timer_heap.hpp, "Reused wake entries"). Only the task itself touches it, and
  // shutdown once the task is abandoned (its fibre never runs again).
  TimerEntry* wait_timer = nullptr;
  // Registry place (all_tasks, shutdown): guarded by shard's lock; shard is null until
  // the task is listed.
  RegistryShard* shard = nullptr;
  uint32_t slot = 0;
  // Sanitizer state.
  void* tsan_fiber = nullptr;
  void* asan_fake = nullptr;
  const void* back_bottom = nullptr;  // bounds of the worker stack we switch back to
  std::size_t back_size = 0;
};

/// Releases f->wait_timer, if any (the task's fibre ends, or was abandoned). timers.cpp.
void drop_wait_timer(TaskFrame* f) noexcept;

}  // namespace spindle::detail
