// TaskFrame: what a started task keeps on its own fibre stack (so that a task that has
// not started costs no more than its small heap object).
//
// Lifetime: made by the fibre's entry function when it first runs, destroyed when the
// body has ended, just before the final switch out. TaskHeader::frame points at it
// meanwhile. `ctx` is written on the fibre's worker once the fibre has switched out (by
// the loop, or by the on-top function of a direct switch: core/fibre.cpp) and read by the
// worker that resumes it next; the hand-over is ordered by the task's state word, or for
// a yielder by the run queue.
#pragma once

#include <boost/context/fiber.hpp>

#include <atomic>
#include <cstdint>
#include <source_location>

#include <spindle/detail/task_header.hpp>

#include "core/stack_pool.hpp"

namespace spindle::detail {

class RegistryShard;
struct TimerEntry;

struct TaskFrame {
  boost::context::fiber ctx;  // the suspended fibre (empty while it runs)
  TaskHeader* task = nullptr;
  RuntimeImpl* rt = nullptr;
  Stack stack;
  // The last suspension point (a default-made one, line 0: none yet). Written by the
  // fibre at each suspension, read by Task::where() and the dumps on any thread: a
  // relaxed atomic (it is a diagnostic), one pointer wide, so one plain store per
  // suspension.
  std::atomic<std::source_location> where{};
  static_assert(std::atomic<std::source_location>::is_always_lock_free);
  /// where, as the three fields the readers report (file null: none yet).
  struct Where {
    const char* file;
    const char* function;
    uint32_t line;
  };
  Where where_now() const noexcept {
    const std::source_location s = where.load(std::memory_order_relaxed);
    if (s.line() == 0) return {nullptr, nullptr, 0};
    return {s.file_name(), s.function_name(), s.line()};
  }
  int64_t started_ns = 0;  // its loop's coarse clock when the fibre started (its age)
  // The timer entry of this task's last timed wait, kept for its next one (one reference;
  // timer_heap.hpp, "Reused wake entries"). Only the task itself touches it, and
  // shutdown once the task is abandoned (its fibre never runs again).
  TimerEntry* wait_timer = nullptr;
  // Registry place (all_tasks, shutdown): guarded by shard's lock; shard is null until
  // the task is listed.
  RegistryShard* shard = nullptr;
  uint32_t slot = 0;
  // The C++ exception globals this fibre had when it last suspended, when they were not
  // empty (eh_held); see fibre.cpp.
  void* eh_caught = nullptr;
  unsigned eh_uncaught = 0;
  bool eh_held = false;
  // Sanitizer state.
  void* tsan_fiber = nullptr;
  void* asan_fake = nullptr;
};

/// Releases f->wait_timer, if any (the task's fibre ends, or was abandoned). timers.cpp.
void drop_wait_timer(TaskFrame* f) noexcept;

}  // namespace spindle::detail
