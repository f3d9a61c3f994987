// Debug mode's slow-step detection (Options::debug, Options::slow_step), as asyncio's
// debug mode reports slow callbacks and Tokio flags long-running tasks: a task that runs
// longer than slow_step without reaching a suspension point is reported (Report::Kind::
// slow_step) with its name, its loop and the place it last resumed from, once per step.
//
// How: each loop stamps every step's start (Worker::step_began) and checks its length at
// its end (Worker::step_ended); a watchdog thread samples each loop's (current task, step
// start) every quarter of slow_step and reports a step still running after slow_step from
// its start. A step that ends between two samples is reported by its loop. Both claim a
// step through Worker::step_reported, so each is reported once, and never one shorter
// than slow_step. Meanwhile the other loops steal the blocked loop's queued tasks as
// they always do.
//
// Threads: the watchdog reads the workers' atomics (relaxed: a sample that is a little
// stale only delays a report by one period) and takes task references through the
// registry before it looks at a task.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace spindle::detail {

class RuntimeImpl;

struct Worker;

class StepWatch {
 public:
  StepWatch(RuntimeImpl* rt, std::chrono::milliseconds slow_step) : rt_(rt), slow_step_(slow_step) {}
  ~StepWatch() { stop(); }
  StepWatch(const StepWatch&) = delete;
  StepWatch& operator=(const StepWatch&) = delete;
  void start();  // after the workers exist
  void stop();   // idempotent; joins the thread

 private:
  void run();
  // Reports the step of `task` that began at `start` on loop w, unless its loop has
  // reported it (or the task has ended, and then its loop has or will, at the step's end).
  void report(Worker* w, const void* task, int64_t start, std::chrono::nanoseconds seen_for);
  RuntimeImpl* const rt_;
  const std::chrono::milliseconds slow_step_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace spindle::detail
