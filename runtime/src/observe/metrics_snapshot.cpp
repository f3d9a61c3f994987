// Runtime::metrics(): sums the per-worker counters (worker.hpp) without stopping anyone.
#include "observe/metrics_snapshot.hpp"

#include <ostream>
#include <sstream>

#include <spindle/runtime.hpp>

#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

namespace {
// Built without metrics (worker.hpp, kMetrics): the figures derived from counters that
// were never written, or from idle spells that were never timed, would be wrong rather
// than zero (tasks_run from the loop turns alone, busy = uptime, completed counting the
// cancelled): every field metrics.hpp lists as compiled out is zero.
[[maybe_unused]] void clear_compiled_out(Metrics& m) {
  for (WorkerMetrics& w : m.workers) {
    const WorkerMetrics kept{
        .index = w.index, .timers_pending = w.timers_pending, .local_queue = w.local_queue, .inbox = w.inbox};
    w = kept;
  }
  m.completed = m.failed = m.cancelled = 0;
  m.stacks_in_use = m.stacks_high_water = 0;
}
}  // namespace

Metrics snapshot_metrics(RuntimeImpl* rt) {
  // relaxed everywhere: each counter has one writer and is only ever added to; a
  // snapshot needs no ordering between counters (metrics.hpp says so).
  constexpr auto rlx = std::memory_order_relaxed;
  Metrics m;
  const int64_t now = monotonic_ns();
  m.uptime = std::chrono::nanoseconds(now - rt->start_ns);
  uint64_t ended = 0, cancelled = 0, failed = 0, spawned = 0, started = 0, fibres_ended = 0, peak = 0;
  m.workers.reserve(rt->workers.size());
  for (Worker* w : rt->workers) {
    WorkerMetrics x;
    x.index = w->index;
    x.tasks_run = w->tick.load(rlx) - w->empty_turns.load(rlx) + w->search_found.load(rlx);
    x.tasks_started = w->started.load(rlx);
    x.steal_attempts = w->steal_attempts.load(rlx);
    x.steals = w->steals.load(rlx);
    x.tasks_stolen = w->tasks_stolen.load(rlx);
    x.io_steals = w->io_steals.load(rlx);
    x.tasks_spilled = w->tasks_spilled.load(rlx);
    x.timers_pending = w->timers.size_seen();
    x.parks = w->parks.load(rlx);
    x.reactor_events = w->reactor_events.load(rlx);
    x.timers_fired = w->timers_fired.load(rlx);
    x.local_queue = w->ring.size();
    x.inbox = w->inbox.size();
    const int64_t since = w->idle_since.load(rlx);
    x.idle = since != 0;
    int64_t idle = w->idle_ns.load(rlx) + (since != 0 && now > since ? now - since : 0);
    const int64_t up = now - rt->start_ns;
    x.busy = std::chrono::nanoseconds(up > idle ? up - idle : 0);
    m.workers.push_back(x);
    started += x.tasks_started;
    peak = std::max(peak, w->stacks_peak.load(rlx));
  }
  // `ended` before `spawned` (as live_tasks does): a task is counted spawned before it
  // can end, so the live count is never too low.
  for (Worker* w : rt->workers) {
    const uint64_t e = w->ended.load(std::memory_order_seq_cst);
    ended += e;
    fibres_ended += e - w->ended_unstarted.load(rlx);
    cancelled += w->cancelled.load(rlx);
    failed += w->failed.load(rlx);
  }
  ended += rt->foreign_ended.load(std::memory_order_seq_cst);
  fibres_ended += rt->abandoned_fibres.load(rlx);
  cancelled += rt->foreign_cancelled.load(rlx);
  spawned = rt->foreign_spawned.load(std::memory_order_seq_cst);
  for (Worker* w : rt->workers) spawned += w->spawned.load(std::memory_order_seq_cst);
  m.spawned = spawned;
  m.live_tasks = spawned > ended ? spawned - ended : 0;
  m.cancelled = cancelled;
  m.failed = failed;
  m.completed = ended > cancelled ? ended - cancelled : 0;
  const int64_t g = rt->global_len.load(rlx);
  m.global_queue = g > 0 ? std::size_t(g) : 0;
  const BlockingPoolStats b = rt->blocking_stats();
  m.blocking_threads = b.threads;
  m.blocking_busy = b.busy;
  m.blocking_queue = b.queued;
  // `started` was read before any `ended`: this is never above the true count.
  m.stacks_in_use = started > fibres_ended ? started - fibres_ended : 0;
  // The snapshots' own samples are kept too (a CAS loop: snapshots are rare and may race).
  peak = std::max<uint64_t>(peak, m.stacks_in_use);
  uint64_t seen = rt->stacks_peak.load(rlx);
  while (seen < peak && !rt->stacks_peak.compare_exchange_weak(seen, peak, rlx, rlx)) {
  }
  m.stacks_high_water = std::max(seen, peak);
  m.stacks_made = rt->stacks.stacks_made();
  if constexpr (!kMetrics) clear_compiled_out(m);
  return m;
}

}  // namespace spindle::detail

namespace spindle {

Metrics Runtime::metrics() const { return detail::snapshot_metrics(impl_.get()); }

namespace {
double ms(std::chrono::nanoseconds d) { return double(d.count()) / 1e6; }
}  // namespace

std::ostream& operator<<(std::ostream& os, const Metrics& m) {
  os << "uptime_ms " << ms(m.uptime) << "\n"
     << "live_tasks " << m.live_tasks << "\n"
     << "spawned " << m.spawned << "\n"
     << "completed " << m.completed << "\n"
     << "failed " << m.failed << "\n"
     << "cancelled " << m.cancelled << "\n"
     << "global_queue " << m.global_queue << "\n"
     << "blocking_threads " << m.blocking_threads << "\n"
     << "blocking_busy " << m.blocking_busy << "\n"
     << "blocking_queue " << m.blocking_queue << "\n"
     << "stacks_in_use " << m.stacks_in_use << "\n"
     << "stacks_high_water " << m.stacks_high_water << "\n"
     << "stacks_made " << m.stacks_made << "\n";
  for (const WorkerMetrics& w : m.workers) {
    os << "loop " << w.index << ": tasks_run " << w.tasks_run << " tasks_started " << w.tasks_started
       << " steal_attempts " << w.steal_attempts << " steals " << w.steals << " tasks_stolen " << w.tasks_stolen
       << " io_steals " << w.io_steals << " tasks_spilled " << w.tasks_spilled << " parks " << w.parks
       << " reactor_events " << w.reactor_events << " timers_fired " << w.timers_fired << " timers_pending "
       << w.timers_pending << " local_queue " << w.local_queue << " inbox " << w.inbox << " busy_ms " << ms(w.busy)
       << (w.idle ? " idle" : " busy") << "\n";
  }
  return os;
}

std::string to_string(const Metrics& m) {
  std::ostringstream os;
  os << m;
  return os.str();
}

}  // namespace spindle
