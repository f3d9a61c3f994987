// Task dumps (monitor.hpp): every live task of a runtime, taken in short looks.
//
// The order of the looks, and why nothing is missed that lives through the dump:
//   1. the registry (every started, unfinished task; registry.hpp);
//   2. each loop's queues, read by that loop itself: inline for the caller's own loop
//      (a fibre of it, so the loop is not running anything else), through a short task
//      pinned to every other loop (Worker::collect_queued), waited for up to
//      DumpOptions::wait;
//   3. the registry again.
// A task queued at 1 is either still queued when its loop looks (2) or has started by
// then, and so is registered at 3 unless it ended. Only a task stolen from a loop not
// yet looked at into one already looked at, and still not started at 3, is missed.
// Each task is reported as it was first seen (a task seen queued and then running shows
// as queued), except that a task that ended meanwhile shows as done.
#include "observe/task_dump.hpp"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <ostream>
#include <sstream>
#include <unordered_map>

#include <spindle/runtime.hpp>

#include "core/frame.hpp"
#include "sched/runtime_impl.hpp"
#include "observe/stack_walk.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

namespace {

// What the collector tasks hand back. Shared with them: a collector that runs after the
// dumper stopped waiting finds `closed` and drops what it took.
struct Collection {
  struct Found {
    TaskHeader* task;  // referenced
    uint16_t sched;
    unsigned loop;
  };
  std::mutex mu;
  bool closed = false;         // guarded by mu
  std::vector<Found> found;    // guarded by mu
  std::vector<bool> answered;  // guarded by mu: per loop
  ~Collection() {
    for (const Found& f : found) f.task->unref();
  }
};

// The name of the tasks that list a loop's queues (they are not listed themselves).
constexpr const char* kCollectorName = "spindle:dump";

struct Seen {
  TaskHeader* task;  // referenced
  TaskState state;
  bool started;
  int loop;
  int64_t started_ns;
  const char* file;
  const char* function;
  uint32_t line;
};

// The tasks seen so far, each once, each holding one reference.
class SeenSet {
 public:
  ~SeenSet() {
    for (const Seen& s : items_)
      if (s.task) s.task->unref();  // null: handed to a handle already
  }
  /// Adopts the reference on s.task.
  void add(const Seen& s) {
    auto [it, fresh] = index_.try_emplace(s.task, items_.size());
    if (!fresh) {
      Seen& old = items_[it->second];
      // Seen before: keep that look; fill in what it could not know (a task seen queued
      // by its loop has its start time and last wait in the registry). A task first
      // seen not started stays so, without what it did since.
      if (old.loop < 0) old.loop = s.loop;
      if (old.started && !old.started_ns) old.started_ns = s.started_ns;
      if (old.started && !old.file && s.file) {
        old.file = s.file, old.function = s.function, old.line = s.line;
      }
      s.task->unref();
      return;
    }
    try {
      items_.push_back(s);
    } catch (...) {
      index_.erase(it);
      s.task->unref();
      throw;
    }
  }
  std::vector<Seen>& items() noexcept { return items_; }

 private:
  std::vector<Seen> items_;
  std::unordered_map<TaskHeader*, std::size_t> index_;
};

int running_on(RuntimeImpl* rt, TaskHeader* t) noexcept {
  // relaxed: which loop runs it is a diagnostic.
  for (Worker* w : rt->workers)
    if (w->current.load(std::memory_order_relaxed) == t) return int(w->index);
  return -1;
}

void look_at_registry(RuntimeImpl* rt, SeenSet& seen) {
  std::vector<RegistryEntry> reg;
  struct Release {  // the snapshot's references, if adding them to `seen` throws
    std::vector<RegistryEntry>& v;
    std::size_t done = 0;
    ~Release() {
      for (std::size_t i = done; i < v.size(); ++i) v[i].task->unref();
    }
  } release{reg};
  for (Worker* w : rt->workers) w->registry.snapshot(reg);
  for (RegistryEntry& e : reg) {
    const int loop = (e.sched & kRunning) ? running_on(rt, e.task) : -1;
    // RUNNING on no loop: a yielder in a run queue (see state_of below).
    const TaskState st = (e.sched & kRunning) && loop < 0 ? TaskState::ready : state_of(e.sched);
    ++release.done;  // add() adopts the reference, whatever happens
    seen.add(Seen{e.task, st, true, loop, e.started_ns, e.file, e.function, e.line});
  }
}

void add_queued(SeenSet& seen, TaskHeader* t, uint16_t sched, unsigned loop) {
  seen.add(Seen{t, TaskState::ready, bool(sched & kStarted), int(loop), 0, nullptr, nullptr, 0});
}

}  // namespace

DumpResult dump_runtime(RuntimeImpl* rt, const DumpOptions& o) {
  Worker* me = current_worker();
  if (me && me->rt != rt) me = nullptr;
  DumpResult res;
  SeenSet seen;

  // 1.
  look_at_registry(rt, seen);

  // 2. Our own loop, if we are one of its fibres: nothing else runs on it meanwhile.
  if (me) {
    std::vector<TaskHeader*> v;
    me->collect_queued(v);
    std::size_t i = 0;
    try {
      for (; i < v.size(); ++i) add_queued(seen, v[i], v[i]->sched.load(std::memory_order_relaxed), me->index);
    } catch (...) {
      for (++i; i < v.size(); ++i) v[i]->unref();
      throw;
    }
  }
  // The other loops, each by a task pinned to it.
  auto col = std::make_shared<Collection>();
  col->answered.assign(rt->workers.size(), false);
  std::vector<Task<>> collectors;
  std::vector<unsigned> asked;
  for (Worker* w : rt->workers) {
    if (w == me) continue;
    TaskOptions to;
    to.name = kCollectorName;
    to.pinned = true;
    to.loop = int(w->index);
    const unsigned loop = w->index;
    try {
      collectors.push_back(spawn_on(rt, &to, [col, loop] {
        std::vector<TaskHeader*> v;
        current_worker()->collect_queued(v);
        std::vector<Collection::Found> mine;
        mine.reserve(v.size());
        for (TaskHeader* t : v) mine.push_back({t, t->sched.load(std::memory_order_relaxed), loop});
        {
          std::lock_guard lk(col->mu);
          if (!col->closed) {
            col->found.insert(col->found.end(), mine.begin(), mine.end());
            col->answered[loop] = true;
            return;
          }
        }
        for (auto& f : mine) f.task->unref();  // the dumper is gone; outside the lock
      }));
      asked.push_back(loop);
    } catch (const RuntimeError&) {
      res.silent_loops.push_back(loop);  // shut down: no task may be spawned from outside
    }
  }
  // Stop waiting at the deadline, and on any exception (a cancelled dumper): the
  // collectors still queued are cancelled, one that runs later drops what it took.
  struct Close {
    Collection& c;
    std::vector<Task<>>& ts;
    ~Close() {
      {
        std::lock_guard lk(c.mu);
        c.closed = true;
      }
      for (auto& t : ts) t.cancel();
    }
  };
  std::vector<Collection::Found> found;
  {
    Close close{*col, collectors};
    const int64_t deadline = deadline_of(o.wait);
    for (auto& t : collectors) {
      if (!t.core_ptr()->wait_done_until(deadline, std::source_location::current())) break;
    }
    std::lock_guard lk(col->mu);
    col->closed = true;
    found.swap(col->found);
    for (unsigned loop : asked)
      if (!col->answered[loop]) res.silent_loops.push_back(loop);
  }
  {
    std::size_t i = 0;
    try {
      for (; i < found.size(); ++i) add_queued(seen, found[i].task, found[i].sched, found[i].loop);
    } catch (...) {
      for (++i; i < found.size(); ++i) found[i].task->unref();
      throw;
    }
  }
  // 3.
  look_at_registry(rt, seen);
  const int64_t g = rt->global_len.load(std::memory_order_relaxed);
  res.global_left = g > 0 ? std::size_t(g) : 0;
  std::sort(res.silent_loops.begin(), res.silent_loops.end());

  const int64_t now_ns = monotonic_ns();

  auto& items = seen.items();
  res.tasks.reserve(items.size());
  for (Seen& s : items) {
    TaskHeader* t = std::exchange(s.task, nullptr);
    Task<> handle(t);  // adopts the reference
    TaskInfo info;
    info.name = task_name(t);
    if (info.name == kCollectorName) continue;  // dumps' helpers (this one's or another's)
    info.task = handle;
    info.id = task_id(t);
    TaskWhere& w = info.where;
    w.state = t->done() ? TaskState::done : s.state;
    w.started = s.started || w.state == TaskState::running || w.state == TaskState::suspended;
    info.loop = w.state == TaskState::suspended || w.state == TaskState::done ? -1 : s.loop;
    if (s.started_ns && now_ns > s.started_ns) info.age = std::chrono::nanoseconds(now_ns - s.started_ns);
    if (s.file && w.state != TaskState::running) {  // a running task waits nowhere
      w.file = s.file;
      w.function = s.function ? s.function : "";
      w.line = s.line;
    }
    if (o.stacks && w.state == TaskState::suspended) info.stack = describe_stack(capture_stack(t));
    res.tasks.push_back(std::move(info));
  }
  // Every reference was adopted by a handle above.
  items.clear();
  std::sort(res.tasks.begin(), res.tasks.end(), [](const TaskInfo& a, const TaskInfo& b) { return a.id < b.id; });
  return res;
}

namespace {

std::string age_text(std::chrono::nanoseconds d, bool started) {
  if (!started) return "-";
  char buf[32];
  const double s = double(d.count()) / 1e9;
  if (s < 1e-3)
    std::snprintf(buf, sizeof buf, "%.0fus", s * 1e6);
  else if (s < 1)
    std::snprintf(buf, sizeof buf, "%.1fms", s * 1e3);
  else if (s < 60)
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) / 60 % 60);
  return buf;
}

}  // namespace

TaskState state_of(uint16_t sched) noexcept {
  if (sched & kEnded) return TaskState::done;
  if (sched & kRunning) return TaskState::running;
  if (sched & kQueued) return TaskState::ready;
  if (sched & kStarted) return TaskState::suspended;
  return TaskState::ready;  // queued and not started
}

TaskState state_of(RuntimeImpl* rt, TaskHeader* t, uint16_t sched) noexcept {
  if ((sched & (kRunning | kEnded)) == kRunning && running_on(rt, t) < 0) return TaskState::ready;
  return state_of(sched);
}

std::string state_text(const TaskWhere& w) {
  if (w.state == TaskState::ready && !w.started) return "ready, not started";
  return to_string(w.state);
}

std::string where_text(const TaskWhere& w) {
  if (w.file.empty()) return "-";
  std::string s = w.file + ":" + std::to_string(w.line);
  if (!w.function.empty()) s += " in " + w.function;
  return s;
}

void print_dump(std::ostream& os, const DumpResult& d) {
  print_tasks(os, d.tasks);
  for (unsigned loop : d.silent_loops)
    os << "note: loop " << loop
       << " did not list its queue in time (busy in a long step?); its queued tasks are not shown\n";
  if (d.global_left) os << "note: " << d.global_left << " task(s) in the global queue are not shown\n";
}

}  // namespace spindle::detail

namespace spindle {

const char* to_string(TaskState s) noexcept {
  switch (s) {
    case TaskState::running:
      return "running";
    case TaskState::ready:
      return "ready";
    case TaskState::suspended:
      return "suspended";
    case TaskState::done:
      return "done";
  }
  return "?";
}

std::vector<TaskInfo> task_infos(const DumpOptions& opts) {
  detail::RuntimeImpl* rt = detail::current_runtime();
  if (!rt) throw RuntimeError("task_infos: no running runtime on this thread");
  return detail::dump_runtime(rt, opts).tasks;
}

std::vector<TaskInfo> task_infos(Runtime& rt, const DumpOptions& opts) {
  return detail::dump_runtime(rt.impl(), opts).tasks;
}

std::vector<StackFrame> task_stack(const Task<>& t) {
  if (!t) throw InvalidStateError("task_stack: empty task handle");
  return detail::describe_stack(detail::capture_stack(static_cast<detail::TaskHeader*>(t.core_ptr())));
}

std::string to_string(const StackFrame& f, std::size_t n) {
  std::string s = "#" + std::to_string(n) + " ";
  s += f.function.empty() ? std::string("??") : f.function;
  if (!f.file.empty())
    s += " at " + f.file + ":" + std::to_string(f.line);
  else if (!f.module.empty())
    s += " (" + f.module + ")";
  return s;
}

void print_tasks(std::ostream& os, const std::vector<TaskInfo>& tasks) {
  char line[160];
  std::snprintf(line, sizeof line, "%-7s %-19s %-4s %-8s %-20s %s\n", "ID", "STATE", "LOOP", "AGE", "NAME", "WHERE");
  os << line;
  for (const TaskInfo& t : tasks) {
    const std::string loop = t.loop < 0 ? std::string("-") : std::to_string(t.loop);
    std::snprintf(line, sizeof line, "%-7llu %-19s %-4s %-8s ", static_cast<unsigned long long>(t.id),
                  detail::state_text(t.where).c_str(), loop.c_str(), detail::age_text(t.age, t.where.started).c_str());
    os << line;
    std::string name = t.name;
    if (name.size() < 20) name.resize(20, ' ');
    os << name << " " << detail::where_text(t.where) << "\n";
    for (std::size_t i = 0; i < t.stack.size(); ++i) os << "        " << to_string(t.stack[i], i) << "\n";
  }
}

void Runtime::dump_tasks(std::ostream& os) const {
  DumpOptions o;
  o.stacks = true;
  detail::print_dump(os, detail::dump_runtime(impl_.get(), o));
}

}  // namespace spindle
