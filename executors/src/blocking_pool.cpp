// The default blocking pool behind to_thread: one ThreadPool per runtime, owned by the
// runtime (runtime_blocking_pool in spindle/internal/runtime_services.hpp), made here on
// the first to_thread call.
//
// The runtime holds a PoolHolder; each to_thread call holds the ThreadPool itself while
// its job runs. Shutdown releases the holder once the worker threads are joined (no task
// can call to_thread any more): the pool's deleter then shuts it down and joins its
// threads, so the runtime's shutdown returns with no pool thread left. The wait is
// bounded (kJoinWithin): a job that is still blocked then is left to finish on its
// detached thread (a job cannot be interrupted) and reported through the runtime's
// report sink.
//
// The pool is bounded by Options::blocking_threads (at least 1) and keeps idle threads
// for 10 s.
#include <spindle/executors/thread_pool.hpp>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include <spindle/errors.hpp>
#include <spindle/internal/runtime_services.hpp>

namespace spindle::detail {

namespace {

constexpr std::chrono::milliseconds kKeepAlive{10'000};
// How long a runtime's shutdown waits for its blocking pool (Runtime's default grace).
constexpr std::chrono::milliseconds kJoinWithin{5'000};

struct PoolHolder final : BlockingPool {
  std::shared_ptr<ThreadPool> pool;
  explicit PoolHolder(std::shared_ptr<ThreadPool> p) noexcept : pool(std::move(p)) {}
  BlockingPoolStats stats() const noexcept override { return {pool->threads(), pool->busy(), pool->queued()}; }
};

std::shared_ptr<BlockingPool> make_pool(RuntimeImpl* rt) {
  const unsigned max = std::max(1u, runtime_options(rt).blocking_threads);
  // The deleter shuts the pool down and joins its threads (see the header comment).
  // It keeps the sink, not the runtime: it may run as the runtime goes away.
  std::shared_ptr<ThreadPool> pool(new ThreadPool(max, kKeepAlive), [sink = runtime_sink(rt)](ThreadPool* p) {
    if (!p->shutdown_for(kJoinWithin))
      sink->report({Report::Kind::task_would_not_end, "to_thread",
                    "a blocking-pool job was still running " + std::to_string(kJoinWithin.count()) +
                        " ms after its runtime shut down; its thread was detached",
                    nullptr});
    delete p;  // no thread left to join: shutdown_for took them all
  });
  return std::make_shared<PoolHolder>(std::move(pool));
}

}  // namespace

std::shared_ptr<ThreadPool> blocking_pool() {
  RuntimeImpl* rt = current_runtime();
  if (!rt) return nullptr;
  const std::shared_ptr<BlockingPool> holder = runtime_blocking_pool(rt, &make_pool);
  // Released by shutdown once the workers were joined: no fibre of rt runs after that.
  if (!holder) throw RuntimeError("to_thread: the runtime has shut down");
  return static_cast<PoolHolder&>(*holder).pool;
}

std::shared_ptr<ReportSink> job_trace_sink() {
  if (!trace_recording()) return nullptr;  // one load while no runtime traces
  RuntimeImpl* rt = current_runtime();
  return rt ? runtime_sink(rt) : nullptr;
}

JobTraceScope::JobTraceScope(std::shared_ptr<ReportSink> sink, const char* what) noexcept
    : sink_(std::move(sink)), what_(what) {
  if (sink_) trace_pool_job(*sink_, what_, true);
}

JobTraceScope::~JobTraceScope() {
  if (sink_) trace_pool_job(*sink_, what_, false);
}

}  // namespace spindle::detail
