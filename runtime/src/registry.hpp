// The registry of started, unfinished tasks (for all_tasks() and for shutdown), sharded
// per worker so that registering a fibre takes an uncontended lock. The links live in
// each task's TaskFrame, on its own stack: registering costs no allocation.
#pragma once

#include <mutex>
#include <vector>

#include <spindle/detail/task_header.hpp>

namespace spindle::detail {

struct TaskFrame;

class RegistryShard {
 public:
  void add(TaskFrame* f) noexcept;
  void remove(TaskFrame* f) noexcept;
  /// Takes a reference on each registered task and appends it to `out`.
  void snapshot(std::vector<TaskHeader*>& out);

 private:
  std::mutex mu_;
  TaskFrame* head_ = nullptr;
};

}  // namespace spindle::detail
