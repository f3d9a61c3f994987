// Task operations that do not depend on the value type: submitting, cancelling, names,
// where(), reports, and the free functions of runtime.hpp that reach the current task.
#include <spindle/runtime.hpp>
#include <spindle/task.hpp>

#include <cstdio>
#include <mutex>
#include <thread>

#include "core/frame.hpp"
#include "sched/runtime_impl.hpp"
#include "observe/task_dump.hpp"
#include "core/task_state.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

namespace {
std::atomic<uint64_t> g_next_task_id{1};

std::string describe(const std::exception_ptr& e) {
  if (!e) return "";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (const CancelledError& x) {
    return std::string("CancelledError: ") + x.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

uint64_t id_locked(FutureCore* c) {
  Extra& x = c->extra_locked();
  // relaxed: only uniqueness matters.
  if (x.id == 0) x.id = g_next_task_id.fetch_add(1, std::memory_order_relaxed);
  return x.id;
}

std::string name_locked(FutureCore* c) {
  Extra& x = c->extra_locked();
  if (!x.name.empty()) return x.name;
  return "Task-" + std::to_string(id_locked(c));
}
}  // namespace

uint64_t task_id(FutureCore* c) {
  std::lock_guard g(*c);
  return id_locked(c);
}

void ReportSink::report(Report r) noexcept {
  try {
    if (fn) {
      fn(r);
      return;
    }
  } catch (...) {
    // A throwing report handler must not take the runtime down; fall back to stderr.
  }
  std::string line = "spindle: " + r.message;
  if (!r.task_name.empty()) line += " [task '" + r.task_name + "']";
  if (r.error) line += ": " + describe(r.error);
  line += "\n";
  std::fputs(line.c_str(), stderr);
}

void report_unretrieved(FutureCore* c) noexcept {
  Extra* x = c->extra();  // the object is being destroyed: nobody else holds it
  std::string name;
  if (c->is_task()) {
    try {
      // The name name() would give (and a dump shows): "Task-<id>", the id given now if
      // nobody asked for it before, so that a report can be matched to its task.
      if (x->name.empty() && x->id == 0) x->id = g_next_task_id.fetch_add(1, std::memory_order_relaxed);
      name = x->name.empty() ? "Task-" + std::to_string(x->id) : x->name;
    } catch (...) {
    }
  }
  Report r{Report::Kind::unretrieved_exception, name,
           c->is_task() ? "Task exception was never retrieved" : "Future exception was never retrieved", x->error};
  if (x->sink) {
    x->sink->report(std::move(r));
  } else {
    ReportSink fallback;
    fallback.report(std::move(r));
  }
}

void destroy_task_common(TaskHeader* t) noexcept {
  const uint32_t w = t->word.load(std::memory_order_acquire);
  if (((w & kStatusMask) >> kStatusShift) == uint32_t(Status::exception) && !(w & kRetrieved)) report_unretrieved(t);
  if (((w & kStatusMask) >> kStatusShift) == uint32_t(Status::pending)) t->release_waiters();
  delete t->extra();
}

void finish_unstarted(TaskHeader* t, Status s, std::exception_ptr e) noexcept {
  t->lock();
  if (s == Status::exception) {
    Extra& x = t->extra_locked();  // an allocation failure here ends the process
    x.error = std::move(e);
    if (RuntimeImpl* rt = current_runtime()) x.sink = rt->sink;
  }
  t->word.fetch_and(uint16_t(~kCancelReq), std::memory_order_relaxed);
  t->publish_and_unlock(s);
  // Its callable goes now, as a body's does when it ends: captures that hold what owns
  // the task (a server's state holding its accept task) must not wait for the last
  // handle, or they keep each other alive. The scheduler's reference, dropped below,
  // keeps the object here meanwhile.
  t->ops->drop_fn(t);
  task_state::end_unstarted(t);
  t->unref();
}

bool cancel_task(FutureCore* c, std::string msg) {
  auto* t = static_cast<TaskHeader*>(c);
  {
    std::lock_guard g(*t);
    if (t->status() != Status::pending) return false;
    if (!msg.empty()) t->extra_locked().cancel_message = std::move(msg);
    // Under the lock, so it cannot race with fibre_main clearing it at the end.
    t->word.fetch_or(kCancelReq, std::memory_order_acq_rel);
  }
  wake_task(t);  // if it is suspended, it wakes up in its wait and raises CancelledError
  return true;
}

std::string task_name(FutureCore* c) {
  std::lock_guard g(*c);
  return name_locked(c);
}

void set_task_name(FutureCore* c, std::string name) {
  std::lock_guard g(*c);
  c->extra_locked().name = std::move(name);
}

TaskWhere task_where(FutureCore* c) {
  auto* t = static_cast<TaskHeader*>(c);
  TaskWhere w;
  const char* file = nullptr;
  const char* function = nullptr;
  uint32_t line = 0;
  t->lock();
  // relaxed: a diagnostic, as the suspension point is (frame.hpp); the task's lock keeps
  // its frame from going meanwhile.
  const uint16_t sched = t->sched.load(std::memory_order_relaxed);
  w.started = sched & kStarted;
  TaskFrame* const fr = t->frame;  // there while the fibre lives (set and cleared under the lock)
  w.state = t->done() ? TaskState::done : fr ? state_of(fr->rt, t, sched) : state_of(sched);
  if (w.started && (w.state == TaskState::suspended || w.state == TaskState::ready))
    if (TaskFrame* f = t->frame) {
      const TaskFrame::Where at = f->where_now();
      file = at.file;
      function = at.function;
      line = at.line;
    }
  t->unlock();
  // The strings are a source_location's, static: copied once the lock is released.
  if (file) {
    w.file = file;
    w.function = function ? function : "";
    w.line = line;
  }
  return w;
}

void submit(RuntimeImpl* rt, TaskHeader* t, const TaskOptions* o) {
  if (!rt) rt = current_runtime();
  if (!rt) {
    t->unref();
    throw RuntimeError("spindle::spawn: no running runtime on this thread (use Runtime::spawn)");
  }
  rt->submit(t, o);
}

RuntimeImpl* runtime_impl(Runtime& rt) noexcept { return rt.impl(); }

}  // namespace spindle::detail

namespace spindle {

std::string to_string(const TaskWhere& w) {
  const std::string at = w.function + " at " + w.file + ":" + std::to_string(w.line);
  switch (w.state) {
    case TaskState::running:
      return "running";
    case TaskState::done:
      return "done";
    case TaskState::suspended:
      return w.file.empty() ? "suspended" : at;
    case TaskState::ready:
      break;
  }
  if (!w.started) return "not started";
  return w.file.empty() ? "ready" : "ready, after " + at;
}

namespace detail {
std::exception_ptr exception_of(FutureCore& c) {
  switch (c.status()) {
    case Status::pending:
      throw InvalidStateError("exception(): not done yet");
    case Status::cancelled:
      throw CancelledError(c.cancel_message());
    case Status::result:
      return nullptr;
    case Status::exception:
      c.word.fetch_or(kRetrieved, std::memory_order_relaxed);
      return c.extra()->error;
  }
  return nullptr;
}

namespace {
// add_done_callback's node: the future it waits on, unowned while linked (the list is
// the future's own: owning it would be a cycle), owned from keep() on.
class FnCallback final : public CallbackWaiter {
 public:
  FnCallback(std::shared_ptr<ReportSink> s, FutureCore* target, std::function<void(FutureCore*)> f)
      : CallbackWaiter(nullptr, std::move(s)), target_(target), fn_(std::move(f)) {}
  ~FnCallback() override {
    if (kept_) target_->unref();
  }
  void invoke() override { fn_(target_); }

 private:
  void keep() noexcept override {
    target_->ref();
    kept_ = true;
  }
  FutureCore* target_;
  bool kept_ = false;
  std::function<void(FutureCore*)> fn_;
};
}  // namespace

std::exception_ptr HandleBase::exception() const { return exception_of(core()); }

void HandleBase::add_callback_erased(std::function<void(FutureCore*)> fn) const {
  RuntimeImpl* rt = current_runtime();
  if (!rt) throw RuntimeError("add_done_callback: no running runtime on this thread");
  auto* cb = new FnCallback(rt->sink, &core(), std::move(fn));
  add_callback(&core(), cb);
}
}  // namespace detail

Task<> current_task() {
  detail::TaskHeader* t = detail::current_task_header();
  if (!t) return Task<>();
  t->ref();
  return Task<>(t);
}

bool in_runtime() noexcept { return detail::current_task_header() != nullptr; }

namespace {
std::vector<Task<>> handles(std::vector<TaskInfo> infos) {
  std::vector<Task<>> out;
  out.reserve(infos.size());
  for (auto& i : infos)
    if (i.where.state != TaskState::done) out.push_back(std::move(i.task));
  return out;
}
}  // namespace

std::vector<Task<>> all_tasks() {
  detail::RuntimeImpl* rt = detail::current_runtime();
  if (!rt) throw RuntimeError("all_tasks: no running runtime on this thread");
  return handles(detail::dump_runtime(rt, DumpOptions{}).tasks);
}

std::vector<Task<>> all_tasks(Runtime& rt) { return handles(detail::dump_runtime(rt.impl(), DumpOptions{}).tasks); }

}  // namespace spindle
