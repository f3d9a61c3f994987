// Options for a Runtime and for one spawn.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <string>

namespace spindle {

/// What the runtime reports: an exception nobody retrieved, a task that would not end
/// at shutdown, a slow step in debug mode, an execution trace whose file could not be
/// written when shutdown finished it (asyncio's loop exception handler context).
struct Report {
  enum class Kind { unretrieved_exception, task_would_not_end, callback_failed, slow_step, trace_failed };
  Kind kind;
  std::string task_name;     ///< the task concerned ("" when none)
  std::string message;       ///< a human-readable line
  std::exception_ptr error;  ///< the exception, when there is one
};

struct Options {
  /// Worker threads, one event loop each. 0 means std::thread::hardware_concurrency().
  unsigned workers = 0;
  /// Default fibre stack size in bytes (rounded up to pages): the usable stack is one page
  /// less. Below it lies a 64 KiB guard region, address space only: an overflow that
  /// reaches it is reported with the task's name and aborts the process. Code built
  /// without -fstack-clash-protection is caught through frames under 64 KiB only.
  std::size_t stack_size = 256 * 1024;
  /// Upper bound of the blocking thread pool (to_thread / run_in_executor).
  unsigned blocking_threads = 64;
  /// Debug mode: report task steps longer than slow_step.
  bool debug = false;
  std::chrono::milliseconds slow_step{100};
  /// Monitor console address ("unix:/path", or "unix:@name" for Linux's abstract
  /// namespace); empty means none. Only this process's uid and root may use it (monitor.hpp).
  std::string monitor{};
  /// Receives every Report; by default reports are printed on stderr.
  std::function<void(const Report&)> report{};
  /// Debug option: randomise the order in which each loop picks ready tasks, so that
  /// no test depends on an ordering it was not promised; and move a socket's readiness
  /// registration to the loop of every task that waits on it from another loop.
  bool shuffle = false;
  /// Execution trace: a file path to record the runtime's trace into, from its start to
  /// its shutdown (Runtime::start_trace); empty means none. A path that cannot be opened
  /// makes the Runtime's constructor throw RuntimeError.
  std::string trace{};
};

/// Per-spawn options (asyncio.create_task(coro, name=...), plus C++ knobs).
struct TaskOptions {
  std::string name{};          ///< shown in reports and dumps; default "Task-<id>"
  std::size_t stack_size = 0;  ///< 0: the runtime's Options::stack_size
  bool pinned = false;         ///< never migrates off its loop
  /// With pinned: the index of the loop (worker) to live on; -1 means the spawning
  /// fibre's loop (loop 0 when spawned from outside the runtime). Any other value
  /// outside 0..workers-1 makes spawn throw std::invalid_argument.
  int loop = -1;
};

}  // namespace spindle
