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
//     in flight). When the last reference goes, the pool is shut down WITHOUT waiting:
//     idle threads exit at once, busy ones after their job (a job cannot be
//     interrupted), so a runtime's shutdown never waits on blocking code.
//
// The pool is bounded by Options::blocking_threads (at least 1) and keeps idle threads
// for 10 s.
#include <spindle/executors/thread_pool.hpp>

#include <algorithm>
#include <mutex>
#include <vector>

#include <spindle/detail/core.hpp>

#include "../../runtime/src/runtime_impl.hpp"

namespace spindle::detail {

namespace {

constexpr std::chrono::milliseconds kKeepAlive{10'000};

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
  // The deleter shuts the pool down without waiting (see the header comment).
  return std::shared_ptr<ThreadPool>(new ThreadPool(max, kKeepAlive), [](ThreadPool* p) {
    p->shutdown(false);
    delete p;
  });
}

struct Cache {
  RuntimeImpl* rt = nullptr;
  std::shared_ptr<ThreadPool> pool;
};
thread_local Cache cache;

}  // namespace

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
