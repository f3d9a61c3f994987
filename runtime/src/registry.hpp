// The registry of started, unfinished tasks (for all_tasks(), task dumps and shutdown),
// sharded per worker so that registering a fibre takes an uncontended lock.
//
// A task registers with the shard of the worker that starts its fibre, as its first step
// (fibre_main), and leaves it when its body has ended, before its outcome is published —
// from whichever worker it ends on. So every task that has started and not ended is
// listed, running ones included. The links live in each task's TaskFrame, on its own
// stack: registering costs no allocation. Tasks that are queued but have not started yet
// are not here; a dump finds them in the run queues (Worker::collect_queued).
//
// Threads: any thread, under the shard's SpinLock (held for a few pointer writes: adds
// and removes come from the owner, removes of migrated tasks from other workers, and
// snapshots from dumpers; contention is rare).
#pragma once

#include <cstdint>
#include <vector>

#include <spindle/detail/spin.hpp>
#include <spindle/detail/task_header.hpp>

#include "frame.hpp"

namespace spindle::detail {

/// One registered task as a snapshot saw it; holds a reference on `task`.
struct RegistryEntry {
  TaskHeader* task;
  int64_t started_ns;    // when its fibre started (TaskFrame::started_ns)
  uint16_t sched;        // its scheduling state when seen
  // Its last suspension point (null file: none yet), read while the frame was linked.
  const char* file;
  const char* function;
  uint32_t line;
};

class RegistryShard {
 public:
  // Inline, with the contended path out of line: every task that starts pays these two.
  void add(TaskFrame* f) noexcept {
    lock();
    f->shard = this;
    f->prev = nullptr;
    f->next = head_;
    if (head_) head_->prev = f;
    head_ = f;
    mu_.unlock();
  }
  void remove(TaskFrame* f) noexcept {
    lock();
    if (f->prev) f->prev->next = f->next; else head_ = f->next;
    if (f->next) f->next->prev = f->prev;
    mu_.unlock();  // f's own links are left as they are: its fibre is ending
  }
  /// Takes a reference on each registered task and appends it to `out`.
  void snapshot(std::vector<TaskHeader*>& out);
  void snapshot(std::vector<RegistryEntry>& out);

 private:
  void lock() noexcept {
    if (!mu_.try_lock()) lock_contended();
  }
  void lock_contended() noexcept;  // out of line: rare
  template <class F>
  void for_each_locked(F&& f);
  SpinLock mu_;
  TaskFrame* head_ = nullptr;  // guarded by mu_
};

}  // namespace spindle::detail
