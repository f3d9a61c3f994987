#include "observe/registry.hpp"

#include <mutex>

namespace spindle::detail {

__attribute__((noinline)) void RegistryShard::lock_contended() noexcept { mu_.lock(); }

__attribute__((noinline)) void RegistryShard::grow(TaskFrame* f) {
  // Keep room in free_ for every slot first, so that remove() never allocates.
  if (slots_.size() == slots_.capacity()) {
    const std::size_t cap = slots_.empty() ? 256 : 2 * slots_.size();
    free_.reserve(cap);
    slots_.reserve(cap);
  }
  slots_.push_back(f);  // within capacity: cannot throw
}

template <class F>
void RegistryShard::for_each_locked(F&& fn) {
  // The caller's vector grows under the lock: dumps are rare, and the owner's adds only
  // wait for the copy.
  std::lock_guard lk(mu_);
  for (TaskFrame* f : slots_)
    if (f) fn(f);
}

void RegistryShard::snapshot(std::vector<TaskHeader*>& out) {
  for_each_locked([&](TaskFrame* f) {
    out.push_back(f->task);  // may throw: take the reference only once it is stored
    f->task->ref();
  });
}

void RegistryShard::snapshot(std::vector<RegistryEntry>& out) {
  for_each_locked([&](TaskFrame* f) {
    // relaxed: the state and the suspension point are diagnostics (see frame.hpp); the
    // frame is alive while it is linked, and we hold the shard's lock.
    const TaskFrame::Where w = f->where_now();
    out.push_back(RegistryEntry{f->task, f->started_ns, f->task->sched.load(std::memory_order_relaxed), w.file,
                                w.function, w.line});
    f->task->ref();
  });
}

}  // namespace spindle::detail
