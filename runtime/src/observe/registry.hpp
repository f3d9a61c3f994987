// The registry of started, unfinished tasks (for all_tasks(), task dumps and shutdown),
// sharded per worker so that registering a fibre takes an uncontended lock.
//
// A task registers with the shard of the worker that starts its fibre, as its first step
// (fibre_main), and leaves it when its body has ended, before its outcome is published —
// from whichever worker it ends on. So every task that has started and not ended is
// listed, running ones included. Tasks that are queued but have not started yet are not
// here; a dump finds them in the run queues (Worker::collect_queued).
//
// Layout: a table of frame pointers with a free list of its empty slots; each frame
// remembers its slot. Adding and removing touch only the table and the task's own frame.
// (An intrusive list through the frames made every add and remove write a neighbour's
// frame, on another fibre's stack: with 100k sleeping fibres that was a cache and TLB
// miss per neighbour, a tenth of the 100k-sleepers run.) The table only allocates when
// it grows past its high-water mark; removing never allocates.
//
// Threads: any thread, under the shard's SpinLock (held for a few writes: adds and
// removes come from the owner, removes of migrated tasks from other workers, and
// snapshots from dumpers; contention is rare).
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include <spindle/detail/spin.hpp>
#include <spindle/detail/task_header.hpp>

#include "core/frame.hpp"

namespace spindle::detail {

/// One registered task as a snapshot saw it; holds a reference on `task`.
struct RegistryEntry {
  TaskHeader* task;
  int64_t started_ns;  // when its fibre started (TaskFrame::started_ns)
  uint16_t sched;      // its scheduling state when seen
  // Its last suspension point (null file: none yet), read while the frame was linked.
  const char* file;
  const char* function;
  uint32_t line;
};

class RegistryShard {
 public:
  // Inline, with the contended path out of line: every task that starts pays these two.
  /// Lists f. Throws std::bad_alloc (f not listed) if the table had to grow and could not.
  void add(TaskFrame* f) {
    lock();
    std::lock_guard g(mu_, std::adopt_lock);
    uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
      slots_[i] = f;
    } else {
      grow(f);
      i = uint32_t(slots_.size() - 1);
    }
    f->slot = i;
    f->shard = this;
  }
  void remove(TaskFrame* f) noexcept {
    lock();
    std::lock_guard g(mu_, std::adopt_lock);
    slots_[f->slot] = nullptr;
    free_.push_back(f->slot);  // never reallocates: free_ has room for every slot (grow)
  }
  /// Takes a reference on each registered task and appends it to `out`.
  void snapshot(std::vector<TaskHeader*>& out);
  void snapshot(std::vector<RegistryEntry>& out);

 private:
  // Takes mu_ (the caller then adopts it in a guard).
  void lock() noexcept {
    if (!mu_.try_lock()) lock_contended();
  }
  void lock_contended() noexcept;  // out of line: rare
  void grow(TaskFrame* f);         // out of line: appends f's slot (requires mu_)
  template <class F>
  void for_each_locked(F&& f);
  SpinLock mu_;
  std::vector<TaskFrame*> slots_;  // guarded by mu_: null where free
  std::vector<uint32_t> free_;     // guarded by mu_: empty slots; capacity >= slots_.size()
};

}  // namespace spindle::detail
