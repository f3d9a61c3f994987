// The caller identity shared by Lock and Condition.
#include <spindle/sync/wait_list.hpp>

#include <thread>

namespace spindle::detail::sync {

uintptr_t current_owner() noexcept {
  if (TaskHeader* t = current_task_header()) return reinterpret_cast<uintptr_t>(t);
  // A foreign thread never migrates, so the address of one of its thread-locals names it.
  // Tasks are at least 8-aligned, so the low bit keeps the two kinds apart.
  static thread_local char self;
  return reinterpret_cast<uintptr_t>(&self) | 1u;
}

}  // namespace spindle::detail::sync
