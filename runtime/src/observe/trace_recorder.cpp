#include "observe/trace_recorder.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <charconv>
#include <cstring>
#include <mutex>
#include <system_error>

#include <spindle/detail/deadline.hpp>
#include <spindle/errors.hpp>
#include <spindle/runtime.hpp>

#include "core/frame.hpp"
#include "observe/trace_hooks.hpp"
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

}  // namespace

void trace_step_begin_named(Worker* loop, TraceRing* r, TaskHeader* t, bool first) noexcept {
  // The step end noted, if the loop came straight here, goes first, on its own; this
  // begin shares its reading.
  int64_t ts;
  if (loop->trace_straight.load(std::memory_order_relaxed)) {  // relaxed: see Worker::trace_straight
    ts = loop->trace_ts;
    trace_end_out(loop);
  } else {
    ts = trace_clock();
  }
  char name[kTraceNameMax];
  std::size_t len = 0;
  {
    std::lock_guard g(*t);
    if (Extra* x = t->extra()) {
      if (!x->name.empty()) {
        len = std::min(x->name.size(), kTraceNameMax);
        std::memcpy(name, x->name.data(), len);
      } else if (x->id != 0) {
        std::memcpy(name, "Task-", 5);
        len = std::size_t(std::to_chars(name + 5, name + kTraceNameMax, x->id).ptr - name);
      }
    }
  }
  // Word 0, the task, the name's length and its bytes in whole words.
  uint64_t w[3 + kTraceNameMax / 8] = {};
  uint32_t n = 2;
  w[1] = key(t);
  w[n++] = len;
  std::memcpy(&w[n], name, len);
  n += uint32_t((len + 7) / 8);
  const uint64_t flags = first ? kBeginFirst : 0;
  w[0] = trace_word0(len ? TraceKind::name : TraceKind::step_begin, ts, flags);
  r->push_array(w, len ? n : n - 1);
}

void trace_end_out(Worker* w) noexcept {
  w->trace_straight.store(false, std::memory_order_relaxed);  // relaxed: see Worker::trace_straight
  TraceRing* r = w->tracing();
  if (!r) return;  // stopped meanwhile
  const TraceKind k = w->trace_end;
  if (k >= TraceKind::next_wait) {
    r->push(2, trace_word0(TraceKind::suspended, w->trace_ts, uint8_t(k) - uint8_t(TraceKind::next_wait)),
            trace_where(w->trace_note.where));
  } else {
    r->push(1, trace_word0(TraceKind::step_end, w->trace_ts, k == TraceKind::next_returned ? kEndReturned : 0));
  }
}

void trace_event(Worker* w, TraceRing* r, TraceKind k, uint64_t a, uint32_t u32, uint16_t b16, uint8_t b8) noexcept {
  w->trace_not_straight();  // a step's end noted goes first
  r->push(3, trace_word0(k, trace_clock()), a, u32 | uint64_t(b16) << 32 | uint64_t(b8) << 48);
}

namespace {

// A wake-up by a thread that is not one of rt's loops: through the side channel.
__attribute__((noinline)) void record_foreign_wake(RuntimeImpl* rt, TaskHeader* t) noexcept {
  std::lock_guard lk(rt->trace_mu);
  if (!rt->tracer) return;  // stopped meanwhile
  TraceEvent e;
  put(&e, trace_clock(), TraceKind::wake, key(t), 0, 0, 0, uint8_t(WakeSource::foreign));
  rt->tracer->push_foreign(os_tid(), e);
}

}  // namespace

namespace {

// The wake-up's word 0 on w (a fresh reading: the wake-to-run latency is measured from
// it).
inline uint64_t wake_word0(Worker* w) noexcept {
  const WakeSource src = w->trace_src != WakeSource::task             ? w->trace_src
                         : w->current.load(std::memory_order_relaxed) ? WakeSource::task
                                                                      : WakeSource::foreign;
  return trace_word0(TraceKind::wake, trace_clock(), uint64_t(src));
}

// The wake-up on w's own ring r by push's out-of-line way, then t made ready (what
// make_ready does on a loop of rt).
__attribute__((noinline)) void record_wake_slow(RuntimeImpl* rt, Worker* w, TraceRing* r, TaskHeader* t, bool lifo,
                                                uint64_t w0) noexcept {
  r->push(2, w0, key(t));
  rt->make_ready_from(w, t, lifo);
}

inline void record_wake(RuntimeImpl* rt, Worker* w, TraceRing* r, TaskHeader* t, bool lifo) noexcept {
  const uint64_t w0 = wake_word0(w);
  if (!r->push_inline(2, w0, key(t))) [[unlikely]]
    return record_wake_slow(rt, w, r, t, lifo, w0);
  rt->make_ready_from(w, t, lifo);
}

// trace_wake's other ways, out of line so that its common one saves no registers.
__attribute__((noinline)) void trace_wake_slow(RuntimeImpl* rt, Worker* w, TaskHeader* t, bool lifo) noexcept {
  if (!w || w->rt != rt) {
    record_foreign_wake(rt, t);
    return rt->make_ready(t, lifo);
  }
  TraceRing* r = w->tracing();
  if (!r) {
    record_foreign_wake(rt, t);  // a loop of rt that has not seen the trace yet
    return rt->make_ready_from(w, t, lifo);
  }
  // A wake between two steps makes the next begin read the clock: the task woken may be
  // that step's, and the wake-up must not come after the begin the writer pairs it with.
  w->trace_not_straight();  // a step's end noted goes first
  record_wake(rt, w, r, t, lifo);
}

}  // namespace

void trace_wake(RuntimeImpl* rt, TaskHeader* t, bool lifo) noexcept {
  // Read in place (one %fs-relative load, no call): nothing here switches fibres.
  Worker* const w = tls_worker;
  TraceRing* r;
  // relaxed: see Worker::trace_straight.
  if (!w || w->rt != rt || !(r = w->tracing()) || w->trace_straight.load(std::memory_order_relaxed)) [[unlikely]]
    return trace_wake_slow(rt, w, t, lifo);
  record_wake(rt, w, r, t, lifo);
}

namespace {

__attribute__((noinline)) void record_foreign_spawn(RuntimeImpl* rt, TaskHeader* t) noexcept {
  std::lock_guard lk(rt->trace_mu);
  if (!rt->tracer) return;
  TraceEvent e;
  put(&e, trace_clock(), TraceKind::spawn, key(t));
  rt->tracer->push_foreign(os_tid(), e);
}

}  // namespace

void trace_spawn_foreign(RuntimeImpl* rt, TaskHeader* t) noexcept { record_foreign_spawn(rt, t); }

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
    // relaxed: published by the release below. A step's end noted in an earlier
    // session is none of this one's.
    w->trace_straight.store(false, std::memory_order_relaxed);
    w->trace.store(w->trace_ring.get(), std::memory_order_release);
    w->step_hooks.fetch_or(Worker::kStepTrace, std::memory_order_relaxed);  // relaxed: see worker.hpp
  }
}

int trace_stop(RuntimeImpl* rt, std::string& what) noexcept {
  // Under the lock, finish included: a start meanwhile would make a second reader of
  // the rings. The writer's thread never takes it.
  std::lock_guard lk(rt->trace_mu);
  if (!rt->tracer) return 0;
  // relaxed: a loop that still sees the ring writes a few more events into it, which
  // stay there (the rings belong to the loops) and are discarded by the next start.
  for (Worker* w : rt->workers) {
    w->step_hooks.fetch_and(uint8_t(~Worker::kStepTrace), std::memory_order_relaxed);  // relaxed: see worker.hpp
    w->trace.store(nullptr, std::memory_order_relaxed);
  }
  g_trace_sessions.fetch_sub(1, std::memory_order_relaxed);
  const int err = rt->tracer->finish(what);
  rt->tracer.reset();
  return err;
}

void trace_stop_reporting(RuntimeImpl* rt) noexcept {
  std::string what;
  if (const int err = trace_stop(rt, what)) {
    try {
      const std::system_error e(err, std::generic_category(), "execution trace: " + what);
      rt->sink->report({Report::Kind::trace_failed, "", e.what(), std::make_exception_ptr(e)});
    } catch (...) {
      // No memory for the report: nothing else can be done from a destructor.
    }
  }
}

}  // namespace spindle::detail

namespace spindle {

void Runtime::start_trace(const std::string& path) { detail::trace_start(impl_.get(), path); }

void Runtime::stop_trace() {
  std::string what;
  if (const int err = detail::trace_stop(impl_.get(), what))
    throw std::system_error(err, std::generic_category(), "stop_trace: " + what);
}

}  // namespace spindle
