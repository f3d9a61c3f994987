#include "step_watch.hpp"

#include <string>
#include <vector>

#include <spindle/task.hpp>

#include "registry.hpp"
#include "runtime_impl.hpp"
#include "worker.hpp"

namespace spindle::detail {

void StepWatch::start() { thread_ = std::thread([this] { run(); }); }

void StepWatch::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StepWatch::run() {
  struct Seen {
    const void* task = nullptr;
    uint64_t tick = 0;
    int64_t since = 0;
    bool reported = false;
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
      const uint64_t tick = w->tick.load(std::memory_order_relaxed);
      Seen& s = seen[i];
      if (t == nullptr || t != s.task || tick != s.tick) {
        s = Seen{t, tick, now, false};
        continue;
      }
      if (!s.reported && now - s.since >= limit) {
        s.reported = true;
        lk.unlock();  // reporting calls user code: stop() must not wait behind it
        report(unsigned(i), t, std::chrono::nanoseconds(now - s.since));
        lk.lock();
      }
    }
  }
}

void StepWatch::report(unsigned loop, const void* task, std::chrono::nanoseconds seen_for) {
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
  if (e != nullptr) {
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
