// Task dumps (runtime/include/spindle/monitor.hpp): taking one, and printing it. Used by
// task_infos, all_tasks, Runtime::dump_tasks and the monitor console.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <spindle/monitor.hpp>

namespace spindle::detail {

class RuntimeImpl;

struct DumpResult {
  std::vector<TaskInfo> tasks;         // sorted by id
  std::vector<unsigned> silent_loops;  // loops that did not list their queues in time
  std::size_t global_left = 0;         // tasks left in the global queue (not listed)
};

/// Takes a dump of rt (task_dump.cpp says how). Any thread; from a fibre of rt it
/// suspends while the other loops answer (CancelledError if the caller is cancelled).
DumpResult dump_runtime(RuntimeImpl* rt, const DumpOptions& o);

/// The table of print_tasks, then a note for each loop or queue it could not list.
void print_dump(std::ostream& os, const DumpResult& d);
std::string state_text(const TaskWhere& w);  // "suspended", "ready, not started", ...
std::string where_text(const TaskWhere& w);  // "file:line in function", or "-"
/// The state a task's scheduling word (TaskHeader::sched) says it is in.
TaskState state_of(uint16_t sched) noexcept;
/// The same for a started task of rt: a task whose word says RUNNING but that no loop
/// runs now yielded and waits in a run queue (a yield writes no state: task_state.hpp),
/// so it is ready. Any thread; rt must be alive (t's frame, or a reference, says so).
TaskState state_of(RuntimeImpl* rt, TaskHeader* t, uint16_t sched) noexcept;

}  // namespace spindle::detail
