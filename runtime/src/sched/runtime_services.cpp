// The functions of spindle/internal/runtime_services.hpp: the other modules' only way
// into a runtime's loops, state and blocking pool.
#include <spindle/internal/runtime_services.hpp>

#include <sys/epoll.h>

#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

RuntimeImpl* loop_runtime(Worker* w) noexcept { return w->rt; }

unsigned loop_index(Worker* w) noexcept { return w->index; }

void loop_watch(Worker* w, int fd, uint32_t events, IoSource* source) { w->reactor.add(fd, events, source); }

void loop_unwatch(Worker* w, int fd) noexcept {
  w->reactor.remove(fd);
  w->reactor.quiesce();  // another worker's poll may still be dispatching to the source
}

bool loop_hand_over(Worker* from, int fd) noexcept { return from->reactor.hand_over(fd); }

std::size_t loop_sources(Worker* w) noexcept { return w->reactor.sources(); }

void loop_unwatch_now(Worker* w, int fd) noexcept { ::epoll_ctl(w->reactor.epoll_fd(), EPOLL_CTL_DEL, fd, nullptr); }

const std::shared_ptr<ReportSink>& runtime_sink(RuntimeImpl* rt) noexcept { return rt->sink; }

const Options& runtime_options(RuntimeImpl* rt) noexcept { return rt->opts; }

std::size_t runtime_loops(RuntimeImpl* rt) noexcept { return rt->workers.size(); }

bool runtime_closed(RuntimeImpl* rt) noexcept {
  // acquire: pairs with shutdown's release store of `closed` after the workers were
  // joined, so their last accesses to the reactors happen before the caller's.
  return rt->closed.load(std::memory_order_acquire);
}

std::shared_ptr<BlockingPool> runtime_blocking_pool(RuntimeImpl* rt,
                                                    std::shared_ptr<BlockingPool> (*make)(RuntimeImpl*)) {
  std::lock_guard lk(rt->blocking_mu);
  if (!rt->blocking && !rt->blocking_released) rt->blocking = make(rt);
  return rt->blocking;
}

BlockingPoolStats RuntimeImpl::blocking_stats() noexcept {
  std::shared_ptr<BlockingPool> pool;
  {
    std::lock_guard lk(blocking_mu);
    pool = blocking;
  }
  return pool ? pool->stats() : BlockingPoolStats{};
}

void RuntimeImpl::release_blocking_pool() noexcept {
  std::shared_ptr<BlockingPool> pool;
  {
    std::lock_guard lk(blocking_mu);
    pool = std::move(blocking);
    blocking_released = true;
  }
  // Outside the lock: the last reference shuts the pool down and joins its threads,
  // which may wait (bounded) for a job still running.
  pool.reset();
}

}  // namespace spindle::detail

namespace spindle::detail {

bool trace_recording() noexcept { return trace_any(); }

void trace_pool_job(ReportSink& sink, const char* what, bool begin) noexcept {
  // The sink's lock keeps the runtime from going away meanwhile (~RuntimeImpl clears
  // sink.rt under it; it stops the trace before that).
  std::lock_guard lk(sink.mu);
  if (sink.rt) trace_job(sink.rt, what, begin);
}

}  // namespace spindle::detail
