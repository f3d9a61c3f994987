// spindle::JobScheduler (aiojobs.Scheduler): runs jobs with a cap on how many run at
// once; the rest wait in a FIFO pending list, which is bounded too.
//
//   JobScheduler jobs(100, 10000);
//   for (auto& conn : conns) jobs.spawn(handle, conn);  // waits if 10,000 are pending
//   jobs.wait();                                          // or jobs.close()
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>

#include <spindle/errors.hpp>
#include <spindle/options.hpp>
#include <spindle/task.hpp>

namespace spindle {

class Runtime;

namespace detail {
class JobCtl;
struct JobRec;
std::shared_ptr<JobCtl> jobs_create(RuntimeImpl* rt, std::size_t limit, std::size_t pending_limit);
std::shared_ptr<JobRec> jobs_enqueue(const std::shared_ptr<JobCtl>& ctl, TaskHeader* t, const TaskOptions* o,
                                     std::source_location where);
void jobs_wait(JobCtl* ctl, std::source_location where);
void jobs_close(JobCtl* ctl, std::source_location where) noexcept;
std::size_t jobs_active(JobCtl* ctl) noexcept;
std::size_t jobs_pending(JobCtl* ctl) noexcept;
bool jobs_closed(JobCtl* ctl) noexcept;
bool job_cancel(JobRec* r, std::string msg);
void job_wait(JobRec* r, std::source_location where);
bool job_is_pending(JobRec* r) noexcept;
bool job_is_active(JobRec* r) noexcept;
}  // namespace detail

/// One job of a JobScheduler (aiojobs.Job): pending (waiting for a free slot), active
/// (running), or done. Copies share the job. Every member may be called from any thread.
template <class T = void>
class Job {
 public:
  Job() = default;
  Job(Task<T> task, std::shared_ptr<detail::JobRec> rec) : task_(std::move(task)), rec_(std::move(rec)) {}

  /// Waits for the job to end and returns its value or rethrows its exception
  /// (CancelledError if it was cancelled). If the waiting task is cancelled, the job is
  /// cancelled too (aiojobs' Job.wait closes the job), awaited, and the waiter gets
  /// CancelledError. A pending job is waited for until it has run.
  T get(std::source_location where = std::source_location::current()) {
    detail::job_wait(rec_.get(), where);
    return task_.result();
  }
  /// Cancels the job (aiojobs' Job.close, without the wait): a pending job leaves the
  /// pending list and never runs; an active one gets CancelledError(msg) at its
  /// suspension point. Returns false if the job is already done.
  bool cancel(std::string msg = {}) { return detail::job_cancel(rec_.get(), std::move(msg)); }
  bool done() const { return task_.done(); }
  bool cancelled() const { return task_.cancelled(); }
  /// Waiting in the pending list for a free slot.
  bool pending() const noexcept { return detail::job_is_pending(rec_.get()); }
  /// Started (holding a slot) and not ended.
  bool active() const noexcept { return detail::job_is_active(rec_.get()); }
  /// The value once done; throws InvalidStateError while not done (as Task::result).
  T result() { return task_.result(); }
  std::exception_ptr exception() const { return task_.exception(); }
  explicit operator bool() const noexcept { return static_cast<bool>(rec_); }

 private:
  Task<T> task_;
  std::shared_ptr<detail::JobRec> rec_;
};

/// aiojobs.Scheduler: at most `limit` jobs run at once; further jobs wait in a FIFO
/// pending list of at most `pending_limit` entries, and spawn() waits while that list is
/// full. A value of 0 means no limit (aiojobs: limit=None, pending_limit=0). A job's
/// exception that nobody retrieves is reported by the runtime ("never retrieved"), as
/// aiojobs hands it to its exception handler.
///
/// Thread rules: every member may be called from any task of the runtime, and from a
/// foreign thread for a scheduler made with a Runtime; spawn() and wait() then block
/// that thread. The destructor (close()) must not run on a worker thread outside a task.
class JobScheduler {
 public:
  /// On the calling task's runtime. Throws RuntimeError outside a runtime.
  explicit JobScheduler(std::size_t limit = 100, std::size_t pending_limit = 10000);
  JobScheduler(Runtime& rt, std::size_t limit = 100, std::size_t pending_limit = 10000);
  /// close(): cancels every job and waits for all of them.
  ~JobScheduler();
  JobScheduler(const JobScheduler&) = delete;
  JobScheduler& operator=(const JobScheduler&) = delete;

  /// Adds fn(args...) as a job: it starts at once if fewer than `limit` jobs are active
  /// (and none is pending), else it joins the back of the pending list. If that list is
  /// full, waits (suspends) until it is not. Throws RuntimeError once the scheduler is
  /// closed (also if it closes while spawn waits), CancelledError if the caller is
  /// cancelled while waiting; fn then never runs.
  template <class F, class... Args>
  requires Spawnable<F, Args...>
  auto spawn(F&& fn, Args&&... args) { return spawn_with(nullptr, std::forward<F>(fn), std::forward<Args>(args)...); }
  /// The same with TaskOptions for the job's task.
  template <class F, class... Args>
  requires Spawnable<F, Args...>
  auto spawn(const TaskOptions& opts, F&& fn, Args&&... args) {
    return spawn_with(&opts, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// Waits until no job is active or pending (jobs spawned meanwhile included). Cancelling
  /// the caller raises CancelledError and leaves the jobs alone. Does not close.
  void wait(std::source_location where = std::source_location::current()) { detail::jobs_wait(ctl_.get(), where); }
  /// Closes the scheduler (spawn() throws from now on), cancels every pending job (it
  /// never runs) and every active one, and waits until all have ended. A cancellation of
  /// the caller meanwhile does not interrupt the wait; it stays pending. Idempotent.
  void close(std::source_location where = std::source_location::current()) noexcept {
    detail::jobs_close(ctl_.get(), where);
  }

  std::size_t active_count() const noexcept { return detail::jobs_active(ctl_.get()); }
  std::size_t pending_count() const noexcept { return detail::jobs_pending(ctl_.get()); }
  bool closed() const noexcept { return detail::jobs_closed(ctl_.get()); }
  std::size_t limit() const noexcept { return limit_; }
  std::size_t pending_limit() const noexcept { return pending_limit_; }

 private:
  template <class F, class... Args>
  auto spawn_with(const TaskOptions* opts, F&& fn, Args&&... args) {
    auto handle = detail::new_task(std::forward<F>(fn), std::forward<Args>(args)...);
    // Takes the scheduler's reference, and submits the task now or later.
    auto rec = detail::jobs_enqueue(ctl_, detail::task_of(handle), opts, std::source_location::current());
    return Job(std::move(handle), std::move(rec));
  }

  std::size_t limit_, pending_limit_;
  std::shared_ptr<detail::JobCtl> ctl_;
};

}  // namespace spindle
