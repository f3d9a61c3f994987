#include "observe/trace_recorder.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <charconv>
#include <cstring>
#include <mutex>

#include <spindle/detail/deadline.hpp>
#include <spindle/errors.hpp>
#include <spindle/runtime.hpp>

#include "core/frame.hpp"
#include "observe/trace_writer.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

__attribute__((visibility("hidden"))) std::atomic<int> g_trace_sessions{0};

namespace {

uint32_t os_tid() noexcept {
  thread_local uint32_t tid = uint32_t(::syscall(SYS_gettid));
  return tid;
}

uint64_t key(TaskHeader* t) noexcept { return reinterpret_cast<uintptr_t>(t); }

void put(TraceEvent* e, int64_t ts, TraceKind k, uint64_t a = 0, uint64_t b = 0, uint32_t u32 = 0, uint16_t b16 = 0,
         uint8_t b8 = 0) noexcept {
  e->ts = ts;
  e->kind = k;
  e->b8 = b8;
  e->b16 = b16;
  e->u32 = u32;
  e->a = a;
  e->b = b;
}

// Records the task's name after its step_begin: up to 3 chunks of 16 bytes.
constexpr std::size_t kNameMax = 48;

// Writes step_begin (and the name, if the task has one) into r at ts.
void step_begin_at(TraceRing* r, int64_t ts, TaskHeader* t, bool first) noexcept {
  uint64_t flow = 0;
  if (!first) {
    // relaxed: the waker stored it before pushing t; the queue hand-over that brought t
    // here orders that store before this load. A load and a store, not an exchange (a
    // locked instruction): no other waker stores until t is suspended again, since only
    // the wake that queues t records one.
    std::atomic<uint64_t>& f = t->frame->trace_flow;
    flow = f.load(std::memory_order_relaxed);
    if (flow) f.store(0, std::memory_order_relaxed);
  }
  char name[kNameMax];
  std::size_t len = 0;
  if (t->extra()) {
    std::lock_guard g(*t);  // the name may be set by another thread meanwhile
    if (Extra* x = t->extra()) {
      if (!x->name.empty()) {
        len = std::min(x->name.size(), kNameMax);
        std::memcpy(name, x->name.data(), len);
      } else if (x->id != 0) {
        std::memcpy(name, "Task-", 5);
        len = std::size_t(std::to_chars(name + 5, name + kNameMax, x->id).ptr - name);
      }
    }
  }
  const uint32_t chunks = uint32_t((len + 15) / 16);
  TraceEvent* e = r->reserve(1 + chunks);
  if (!e) return;
  put(e, ts, TraceKind::step_begin, key(t), flow, 0, 0, first ? 1 : 0);
  for (uint32_t c = 0; c < chunks; ++c) {
    e = r->next(e);
    uint64_t w[2] = {0, 0};
    const std::size_t n = std::min<std::size_t>(16, len - c * 16);
    std::memcpy(w, name + c * 16, n);
    put(e, ts, TraceKind::name, w[0], w[1], uint32_t(len), uint16_t(c));
  }
  r->commit(1 + chunks);
}

// Writes the suspension the step ended at (noted by trace_suspend), if any, and the
// step's end, both at ts.
void step_end_at(Worker* w, TraceRing* r, int64_t ts, TaskHeader* t, bool ended) noexcept {
  const bool suspended = std::exchange(w->trace_note.pending, false);
  TraceEvent* e = r->reserve(suspended ? 2 : 1);
  if (!e) return;
  if (suspended) {
    const auto& s = w->trace_note;
    put(e, ts, TraceKind::suspend, reinterpret_cast<uintptr_t>(s.file), reinterpret_cast<uintptr_t>(s.function), s.line,
        0, uint8_t(s.kind));
    e = r->next(e);
  }
  put(e, ts, TraceKind::step_end, key(t), 0, 0, 0, ended ? 1 : 0);
  r->commit(suspended ? 2 : 1);
}

}  // namespace

void trace_step_begin(Worker*, TraceRing* r, TaskHeader* t, bool first) noexcept {
  step_begin_at(r, trace_clock(), t, first);
}

void trace_step_end(Worker* w, TraceRing* r, TaskHeader* t, bool ended) noexcept {
  step_end_at(w, r, trace_clock(), t, ended);
}

void trace_suspend(Worker* w, TraceRing*, std::source_location where, SuspendKind kind) noexcept {
  // Noted here, written with the step's end (one clock reading for both).
  w->trace_note = {where.file_name(), where.function_name(), where.line(), w->yielding ? SuspendKind::yield : kind,
                   true};
}

void trace_event(TraceRing* r, TraceKind k, uint64_t a, uint32_t u32, uint16_t b16, uint8_t b8) noexcept {
  if (TraceEvent* e = r->reserve()) {
    put(e, trace_clock(), k, a, 0, u32, b16, b8);
    r->commit();
  }
}

namespace {

void record_wake(RuntimeImpl* rt, TaskHeader* t) noexcept {
  Worker* w = current_worker();
  TraceRing* r = w && w->rt == rt ? w->tracing() : nullptr;
  uint64_t flow = 0;
  if (r) {
    // The loop's own sequence: flow ids of different loops never collide.
    flow = (uint64_t(w->index + 1) << 40) | ++w->trace_flows;
    if (TraceEvent* e = r->reserve()) {
      const WakeSource src = w->trace_src != WakeSource::task             ? w->trace_src
                             : w->current.load(std::memory_order_relaxed) ? WakeSource::task
                                                                          : WakeSource::foreign;
      put(e, trace_clock(), TraceKind::wake, key(t), flow, 0, 0, uint8_t(src));
      r->commit();
    } else {
      flow = 0;  // dropped: no arrow to a start that has none
    }
  } else {
    std::lock_guard lk(rt->trace_mu);
    if (!rt->tracer) return;  // stopped meanwhile
    flow = rt->tracer->next_foreign_flow();
    TraceEvent e;
    put(&e, trace_clock(), TraceKind::wake, key(t), flow, 0, 0, uint8_t(WakeSource::foreign));
    rt->tracer->push_foreign(os_tid(), e);
  }
  // relaxed: see step_begin_at.
  t->frame->trace_flow.store(flow, std::memory_order_relaxed);
}

}  // namespace

void trace_wake(RuntimeImpl* rt, TaskHeader* t, bool lifo) noexcept {
  record_wake(rt, t);
  rt->make_ready(t, lifo);
}

void trace_spawn(RuntimeImpl* rt, Worker* w, TaskHeader* t) noexcept {
  if (w) {
    if (TraceRing* r = w->tracing()) trace_event(r, TraceKind::spawn, key(t));
    return;
  }
  std::lock_guard lk(rt->trace_mu);
  if (!rt->tracer) return;
  TraceEvent e;
  put(&e, trace_clock(), TraceKind::spawn, key(t));
  rt->tracer->push_foreign(os_tid(), e);
}

void trace_job(RuntimeImpl* rt, const char* what, bool begin) noexcept {
  std::lock_guard lk(rt->trace_mu);
  if (!rt->tracer) return;
  TraceEvent e;
  put(&e, trace_clock(), begin ? TraceKind::job_begin : TraceKind::job_end, reinterpret_cast<uintptr_t>(what));
  rt->tracer->push_foreign(os_tid(), e);
}

void trace_start(RuntimeImpl* rt, const std::string& path) {
  if constexpr (!kTrace) {
    throw RuntimeError("start_trace: tracing is compiled out of this build of spindle (meson -Dtrace=false)");
  }
  std::lock_guard lk(rt->trace_mu);
  if (rt->tracer) throw RuntimeError("start_trace: a trace is already being recorded (to '" + rt->trace_path + "')");
  if (rt->closing.load(std::memory_order_acquire)) throw RuntimeError("start_trace: the runtime is shut down");
  if (path.empty()) throw RuntimeError("start_trace: empty path");
  std::vector<TraceRing*> rings;
  for (Worker* w : rt->workers) {
    if (!w->trace_ring) w->trace_ring = std::make_unique<TraceRing>();
    rings.push_back(w->trace_ring.get());
  }
  const int64_t slow = std::chrono::nanoseconds(rt->opts.slow_step).count();
  auto tracer = std::make_unique<TraceWriter>(path, std::move(rings), slow);  // throws: bad path
  tracer->start();
  rt->tracer = std::move(tracer);
  rt->trace_path = path;
  g_trace_sessions.fetch_add(1, std::memory_order_relaxed);  // relaxed: see trace_any()
  // release: the ring (made above) is complete before a loop that sees the pointer
  // writes into it (Worker::tracing() loads with acquire).
  for (Worker* w : rt->workers) {
    w->trace.store(w->trace_ring.get(), std::memory_order_release);
    w->step_hooks.fetch_or(Worker::kStepTrace, std::memory_order_relaxed);  // relaxed: see worker.hpp
  }
}

void trace_stop(RuntimeImpl* rt) noexcept {
  // Under the lock, finish included: a start meanwhile would make a second reader of
  // the rings. The writer's thread never takes it.
  std::lock_guard lk(rt->trace_mu);
  if (!rt->tracer) return;
  // relaxed: a loop that still sees the ring writes a few more events into it, which
  // stay there (the rings belong to the loops) and are discarded by the next start.
  for (Worker* w : rt->workers) {
    w->step_hooks.fetch_and(uint8_t(~Worker::kStepTrace), std::memory_order_relaxed);  // relaxed: see worker.hpp
    w->trace.store(nullptr, std::memory_order_relaxed);
  }
  g_trace_sessions.fetch_sub(1, std::memory_order_relaxed);
  rt->tracer->finish();
  rt->tracer.reset();
}

}  // namespace spindle::detail

namespace spindle {

void Runtime::start_trace(const std::string& path) { detail::trace_start(impl_.get(), path); }

void Runtime::stop_trace() noexcept { detail::trace_stop(impl_.get()); }

}  // namespace spindle
