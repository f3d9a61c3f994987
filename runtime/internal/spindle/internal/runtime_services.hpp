// What the sync, io and executors modules may use of the runtime's internals, and
// nothing more: the calling thread's loop, a loop's reactor, its runtime's state and
// report sink, and the runtime's blocking pool. The runtime's own sources (runtime/src)
// are private to it; the build gives the other modules this directory and the public
// headers only, so an include of anything else fails to compile. Not installed: users
// see the public headers alone.
//
// A loop is one worker thread's event loop (`Worker`, opaque here). Every function is
// out of line: a fibre may move to another thread at any suspension, so nothing here
// may be inlined into a caller that keeps its result across one.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include <spindle/detail/core.hpp>
#include <spindle/options.hpp>

namespace spindle::detail {

struct Worker;
class RuntimeImpl;

// ---- Reports ----------------------------------------------------------------------

/// Where a runtime's reports go (Options::report, or stderr). Shared with tasks, sources
/// and pools that may outlive the runtime: `rt` is cleared (under mu) when the runtime
/// is destroyed, so holding the sink and locking mu is how another module asks whether
/// the runtime still exists.
struct ReportSink {
  std::function<void(const Report&)> fn;
  std::mutex mu;
  RuntimeImpl* rt = nullptr;  // guarded by mu
  void report(Report r) noexcept;
};

// ---- Loops and their reactors -------------------------------------------------------

/// Something registered with a loop's reactor (an fd, a signalfd, ...). on_ready runs on
/// a worker's scheduler stack (the owner's, or another worker's that polls a preempted
/// loop's reactor for it): it must only make fibres runnable, never block, and be safe
/// against a concurrent call for another edge (two edges of one fd, in and out, may be
/// dispatched at once on two threads).
struct IoSource {
  virtual void on_ready(uint32_t epoll_events) noexcept = 0;

 protected:
  ~IoSource() = default;
};

/// The calling thread's loop, or null on a thread outside every runtime.
Worker* current_worker() noexcept;
/// The runtime a loop belongs to.
RuntimeImpl* loop_runtime(Worker* w) noexcept;
/// The loop's index in its runtime (TaskOptions::loop pins a task to it).
unsigned loop_index(Worker* w) noexcept;
/// Edge-triggered registration of fd with the loop's reactor; `source` is called on
/// readiness. Throws std::system_error from epoll_ctl. The loop's own thread, or any
/// thread once the runtime has stopped (runtime_closed).
void loop_watch(Worker* w, int fd, uint32_t events, IoSource* source);
/// Removes fd and waits until no other worker's poll still holds its source's pointer:
/// the source may be freed afterwards. Same threads as loop_watch.
void loop_unwatch(Worker* w, int fd) noexcept;
/// The loop `from` gives up fd so that the calling loop (another of the same runtime)
/// can register it with loop_watch: removes it from `from`'s reactor and waits until no
/// poll there still holds its source's pointer. False, with nothing changed, when `from`
/// is inside a poll of its own just then (it still delivers fd's edges). The calling
/// loop's thread.
bool loop_hand_over(Worker* from, int fd) noexcept;
/// The fds a loop's reactor watches (a hint from other threads).
std::size_t loop_sources(Worker* w) noexcept;
/// Removes fd without waiting for other pollers (shutdown's last resort: the source is
/// then leaked, never freed). Any thread.
void loop_unwatch_now(Worker* w, int fd) noexcept;

// ---- Runtimes -----------------------------------------------------------------------

// current_runtime() and current_task_header() (the calling fibre's runtime and task)
// are in spindle/detail/core.hpp.
const std::shared_ptr<ReportSink>& runtime_sink(RuntimeImpl* rt) noexcept;
const Options& runtime_options(RuntimeImpl* rt) noexcept;
/// Its loops' count (fixed for its lifetime).
std::size_t runtime_loops(RuntimeImpl* rt) noexcept;
/// True once shutdown has joined the workers: no loop polls its reactor any more, so
/// their registrations are the caller's to remove. Acquire: what the workers did is
/// visible. Call with the runtime alive (its sink's mu held, or from one of its loops).
bool runtime_closed(RuntimeImpl* rt) noexcept;

// ---- The blocking pool -------------------------------------------------------------

struct BlockingPoolStats {
  std::size_t threads = 0, busy = 0, queued = 0;
};

/// A runtime's blocking pool (behind to_thread), as the runtime sees it: owned by the
/// runtime, made by the executors module on first use (the runtime does not depend on
/// that module), released by shutdown once the workers are joined.
class BlockingPool {
 public:
  virtual ~BlockingPool() = default;
  virtual BlockingPoolStats stats() const noexcept = 0;
};

/// rt's blocking pool, made by `make` if it has none yet (at most once; `make` runs
/// under the runtime's lock and may throw, leaving none). Null once shutdown released
/// it. Any thread.
std::shared_ptr<BlockingPool> runtime_blocking_pool(RuntimeImpl* rt,
                                                    std::shared_ptr<BlockingPool> (*make)(RuntimeImpl*));

// ---- The execution trace -------------------------------------------------------------

/// True while some runtime of this process records a trace (Runtime::start_trace): one
/// relaxed load, for a caller to skip the rest. Any thread.
bool trace_recording() noexcept;
/// Records the start (begin) or the end of a pool job that runs on the calling thread
/// into the trace of the runtime behind `sink`, on that thread's own track: nothing if
/// that runtime is gone or records no trace. `what` must live as long as the process (a
/// string literal). Any thread outside the runtime's loops; takes the sink's lock.
void trace_pool_job(ReportSink& sink, const char* what, bool begin) noexcept;

}  // namespace spindle::detail
