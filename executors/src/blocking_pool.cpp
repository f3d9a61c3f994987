// The default blocking pool behind to_thread: one ThreadPool per runtime.
//
// The runtime does not own it yet (runtime/ has no hook for it), so it lives here:
//
//   * `table` (process-wide, under `table_mu`) maps a RuntimeImpl* to a weak reference
//     to its pool, plus a weak reference to the runtime's ReportSink, whose `rt` field
//     the runtime clears when it is destroyed. An entry whose sink is gone or no longer
//     points at that runtime is stale (a later runtime may reuse the address): it is
//     replaced, never reused.
//   * Each worker thread caches a strong reference to its runtime's pool in a
//     thread_local (a worker thread belongs to one runtime for its whole life, so the
//     cache cannot go stale; it is read only inside blocking_pool(), which never
//     suspends, so no fibre carries the cached address to another thread).
//   * So the pool lives while its runtime's worker threads live (plus any to_thread call
//     in flight). The last reference normally goes in the thread_local destructor of the
//     last worker thread to exit, while Runtime::shutdown joins the workers (step 5):
//     the pool is then shut down and its threads joined, so the runtime's shutdown
//     returns with no pool thread left. The wait is bounded (kJoinWithin): a job that
//     is still blocked then is left to finish on its detached thread (a job cannot be
//     interrupted) and reported through the runtime's report sink.
//
// The pool is bounded by Options::blocking_threads (at least 1) and keeps idle threads
// for 10 s.
#include <spindle/executors/thread_pool.hpp>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include <spindle/detail/core.hpp>

#include "../../runtime/src/metrics.hpp"
#include "../../runtime/src/runtime_impl.hpp"

namespace spindle::detail {

namespace {

constexpr std::chrono::milliseconds kKeepAlive{10'000};
// How long a runtime's shutdown waits for its blocking pool (Runtime's default grace).
constexpr std::chrono::milliseconds kJoinWithin{5'000};

struct Entry {
  RuntimeImpl* rt;
  std::weak_ptr<ReportSink> sink;
  std::weak_ptr<ThreadPool> pool;
};

std::mutex table_mu;
std::vector<Entry>& table() {
  // Leaked on purpose: pools may be released by worker threads' thread_local
  // destructors after static destruction began.
  static auto* t = new std::vector<Entry>();
  return *t;
}

bool runtime_alive(const Entry& e) {
  const std::shared_ptr<ReportSink> s = e.sink.lock();
  if (!s) return false;
  std::lock_guard lk(s->mu);
  return s->rt == e.rt;
}

std::shared_ptr<ThreadPool> make_pool(RuntimeImpl* rt) {
  const unsigned max = std::max(1u, rt->opts.blocking_threads);
  // The deleter shuts the pool down and joins its threads (see the header comment).
  // It keeps the sink, not the runtime: it may run as the runtime goes away.
  return std::shared_ptr<ThreadPool>(new ThreadPool(max, kKeepAlive), [sink = rt->sink](ThreadPool* p) {
    if (!p->shutdown_for(kJoinWithin))
      sink->report({Report::Kind::task_would_not_end, "to_thread",
                    "a blocking-pool job was still running " + std::to_string(kJoinWithin.count()) +
                        " ms after its runtime shut down; its thread was detached",
                    nullptr});
    delete p;  // no thread left to join: shutdown_for took them all
  });
}

struct Cache {
  RuntimeImpl* rt = nullptr;
  std::shared_ptr<ThreadPool> pool;
};
thread_local Cache cache;

}  // namespace

BlockingPoolStats blocking_pool_stats(RuntimeImpl* rt) noexcept {
  // Read only, for Runtime::metrics(): never makes a pool.
  std::shared_ptr<ThreadPool> pool;
  {
    std::lock_guard lk(table_mu);
    for (auto& e : table())
      if (e.rt == rt && runtime_alive(e) && (pool = e.pool.lock())) break;
  }
  if (!pool) return {};
  return {pool->threads(), pool->busy(), pool->queued()};
}

std::shared_ptr<ThreadPool> blocking_pool() {
  RuntimeImpl* rt = current_runtime();
  if (!rt) return nullptr;
  if (cache.rt == rt && cache.pool) return cache.pool;
  std::shared_ptr<ThreadPool> pool;
  {
    std::lock_guard lk(table_mu);
    auto& t = table();
    for (auto& e : t) {
      if (e.rt == rt && runtime_alive(e)) {
        pool = e.pool.lock();
        if (pool) break;
      }
    }
    if (!pool) {
      // Drop stale entries (dead runtimes, released pools), then add ours.
      std::erase_if(t, [&](const Entry& e) { return e.rt == rt || e.pool.expired() || !runtime_alive(e); });
      pool = make_pool(rt);
      t.push_back(Entry{rt, rt->sink, pool});
    }
  }
  cache.rt = rt;
  cache.pool = pool;
  return pool;
}

}  // namespace spindle::detail
