// Seeing every task and where it waits: task dumps, and the monitor console.
//
// A dump lists every live task of a runtime — running, ready (queued, including tasks
// that have not started yet), suspended — with its id, name, loop, age and the
// suspension point it waits at (the file:line of the wait, from std::source_location),
// and on request the call stack of each suspended fibre (symbolised from the debug
// information when the program has it, else from its symbol table).
//
// How it is taken, without stopping the runtime: started tasks are in a per-loop
// registry; queued tasks are read by each loop itself (a short task pinned to it lists
// its own queues, so nothing else ever touches them), and a suspended fibre's stack is
// read while the dump holds it exactly as a loop holds a running task, so it cannot be
// resumed underneath (a wake-up meanwhile is kept and acted on once the stack is read).
// A loop busy in a long step cannot list its queue: after DumpOptions::wait the dump goes
// on without it and says so (TaskInfo cannot show those tasks; dump_tasks prints a note).
// The dump is a sequence of short looks, not an instant: a task that moves between queues
// while it is taken may be missed, and each task shows its state when it was first seen.
//
// The monitor console: Options::monitor = "unix:/path/to/socket" makes the runtime serve
// a line-based console on that Unix socket (commands: ps, where ID, cancel ID, stats,
// help); tools/spindle_monitor.cpp is a client (`spindle-monitor /path/to/socket`).
// It runs on a thread of its own, so it answers even when every loop is stuck.
// "unix:@name" puts the socket in Linux's abstract namespace. Only the process's own
// (effective) uid and root may use the console, on either kind of socket: each
// connection's peer credentials are checked and any other user's connection is closed
// without a word. A client that sends commands and never reads stalls only itself.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <spindle/task.hpp>
#include <spindle/time_limit.hpp>

namespace spindle {

class Runtime;

// TaskWhere and TaskState (a task's state in a dump, as in Task::where()) are in
// <spindle/task.hpp>.

/// One frame of a suspended fibre's call stack, innermost first.
struct StackFrame {
  uintptr_t pc = 0;      ///< the return address (the call is just before it)
  std::string function;  ///< demangled; "" when unknown
  std::string file;      ///< source file, from debug information; "" when unknown
  unsigned line = 0;
  std::string module;  ///< the executable or shared object, when file is unknown
};

struct TaskInfo {
  Task<> task;      ///< a handle (keeps the task object alive)
  uint64_t id = 0;  ///< Task::id(); the console's ID
  std::string name;
  /// Its state and suspension point, as Task::where() answers at the dump (a running
  /// task waits nowhere: its file is "").
  TaskWhere where;
  int loop = -1;  ///< the loop running it or holding it in a queue; -1 otherwise
  /// Since its fibre started (0 if not started), from its loop's coarse clock: it may
  /// read high by the time its loop took for 256 turns before the start.
  std::chrono::nanoseconds age{0};
  /// Suspended tasks, when DumpOptions::stacks: innermost first, from the wait down to
  /// the task's own function (the switch and the fibre's entry are left out).
  std::vector<StackFrame> stack;
};

struct DumpOptions {
  bool stacks = false;  ///< capture the call stack of every suspended task
  /// How long to wait for the loops to list their queues (a loop that has not answered
  /// by then is left out of the dump). std::nullopt: wait for every loop.
  TimeLimit wait = std::chrono::milliseconds(200);
};

/// A dump of the calling fibre's runtime (throws RuntimeError outside a runtime). From a
/// fibre this suspends while other loops answer (the caller is listed as running).
std::vector<TaskInfo> task_infos(const DumpOptions& opts = {});
/// A dump of rt, from any thread (a foreign thread blocks while the loops answer).
std::vector<TaskInfo> task_infos(Runtime& rt, const DumpOptions& opts = {});

/// The call stack of t if it is suspended now, as TaskInfo::stack (empty if it is
/// running, queued or done, or on a platform without a stack walker: only x86-64 has one
/// so far). Any thread.
std::vector<StackFrame> task_stack(const Task<>& t);

/// Writes a dump as a table (ID STATE LOOP AGE NAME WHERE), each suspended task's stack
/// under its line when it was captured.
void print_tasks(std::ostream& os, const std::vector<TaskInfo>& tasks);
/// One frame as "#n function at file:line" (or "module+0xoffset").
std::string to_string(const StackFrame& f, std::size_t n);

}  // namespace spindle
