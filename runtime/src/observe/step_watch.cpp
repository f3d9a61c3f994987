#include "observe/step_watch.hpp"

#include <string>
#include <vector>

#include <spindle/task.hpp>

#include "observe/registry.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

void StepWatch::start() {
  thread_ = std::thread([this] { run(); });
}

void StepWatch::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StepWatch::run() {
  // The step each loop ran at the last sample: its task and its start (Worker::step_start).
  struct Seen {
    const void* task = nullptr;
    int64_t start = 0;
  };
  std::vector<Seen> seen(rt_->workers.size());
  const auto period = std::max<std::chrono::nanoseconds>(saturating_ns(slow_step_) / 4, std::chrono::milliseconds(1));
  const int64_t limit = saturating_ns(slow_step_).count();
  std::unique_lock lk(mu_);
  while (!cv_.wait_for(lk, period, [&] { return stop_; })) {
    const int64_t now = monotonic_ns();
    for (std::size_t i = 0; i < seen.size(); ++i) {
      Worker* w = rt_->workers[i];
      // relaxed: samples (see the header); the pointer is only compared, never followed.
      const void* t = w->current.load(std::memory_order_relaxed);
      const int64_t start = w->step_start.load(std::memory_order_relaxed);
      Seen& s = seen[i];
      // A step is acted on only once two samples a period apart agree on it: the two
      // relaxed loads may pair a new task with the previous step's start for an
      // instant at a switch, never for a whole period.
      if (t == nullptr || start == 0 || t != s.task || start != s.start) {
        s = Seen{t, start};
        continue;
      }
      // relaxed: a hint (the claim in report() decides); a step already claimed is left.
      if (now - start >= limit && w->step_reported.load(std::memory_order_relaxed) != start) {
        lk.unlock();  // reporting calls user code: stop() must not wait behind it
        report(w, t, start, std::chrono::nanoseconds(now - start));
        lk.lock();
      }
    }
  }
}

void StepWatch::report(Worker* w, const void* task, int64_t start, std::chrono::nanoseconds seen_for) {
  // The task may have ended since it was sampled: find it among the listed (started,
  // unfinished) tasks, which hands us a reference, before looking at it.
  std::vector<RegistryEntry> listed;
  try {
    for (Worker* w : rt_->workers) w->registry.snapshot(listed);
  } catch (...) {
    // no memory for the snapshot: skip this report rather than fail the watchdog
  }
  const RegistryEntry* e = nullptr;
  for (const RegistryEntry& x : listed)
    if (x.task == task) e = &x;
  // The claim comes only now, with the task found (and referenced): claiming first lost
  // the report of a step whose task ended before the snapshot, since its loop, finding
  // the step claimed, left it to us. exchange: the loop claims a long step the same way
  // when it ends (step_ended_slow); whichever comes first reports it. relaxed: one
  // atomic, whose RMWs are totally ordered, is all the claim needs.
  if (e != nullptr && w->step_reported.exchange(start, std::memory_order_relaxed) != start) {
    const unsigned loop = w->index;
    try {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(seen_for).count();
      std::string where = e->file ? std::string(e->file) + ":" + std::to_string(e->line) : "its start";
      Report r{Report::Kind::slow_step, task_name(e->task), "", nullptr};
      r.message = "task '" + r.task_name + "' has run for " + std::to_string(ms) + " ms on loop " +
                  std::to_string(loop) + " without reaching a suspension point (resumed from " + where +
                  "; slow_step is " + std::to_string(slow_step_.count()) + " ms)";
      rt_->sink->report(std::move(r));
    } catch (...) {
      // as above: a report we cannot build is dropped, the watchdog goes on
    }
  }
  for (const RegistryEntry& x : listed) x.task->unref();
}

}  // namespace spindle::detail

namespace spindle::detail {

// A step that ended after slow_step without the watchdog having reported it (it samples
// every quarter of slow_step, so a step only a little longer ends between two samples).
// Runs on the loop, between the step and the next: t is referenced (by the scheduler).
void Worker::step_ended_slow(TaskHeader* t) noexcept {
  const int64_t start = step_start.load(std::memory_order_relaxed);  // owner: our own store
  step_start.store(0, std::memory_order_relaxed);                    // between steps: nothing to watch
  if (start == 0 || t == nullptr) return;
  const int64_t ran = monotonic_ns() - start;
  if (ran < slow_step_ns) return;
  if (step_reported.exchange(start, std::memory_order_relaxed) == start) return;  // the watchdog did
  try {
    Report r{Report::Kind::slow_step, task_name(t), "", nullptr};
    r.message = "task '" + r.task_name + "' ran for " + std::to_string(ran / 1'000'000) + " ms on loop " +
                std::to_string(index) + " without reaching a suspension point (slow_step is " +
                std::to_string(slow_step_ns / 1'000'000) + " ms)";
    rt->sink->report(std::move(r));
  } catch (...) {
    // a report we cannot build (no memory) is dropped; the loop goes on
  }
}

}  // namespace spindle::detail
