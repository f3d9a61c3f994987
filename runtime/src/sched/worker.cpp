#include "sched/worker.hpp"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

#include "core/fibre.hpp"
#include "core/frame.hpp"
#include "core/overflow_guard.hpp"
#include "sched/runtime_impl.hpp"
#include "core/sanitizer.hpp"
#include "core/task_state.hpp"
#include "observe/trace_hooks.hpp"
#include "sched/timer_heap.hpp"

#include <spindle/detail/spin.hpp>
#include <spindle/task.hpp>

namespace spindle::detail {

Worker::Worker(RuntimeImpl* r, unsigned i)
    : rt(r),
      index(i),
      stacks(r->stacks),
      rng(0x9E3779B9u * (i + 1)),
      shuffle(r->opts.shuffle),
      step_hooks(r->opts.debug ? kStepSlow : 0),
      slow_step_ns(r->opts.debug ? std::chrono::nanoseconds(r->opts.slow_step).count() : 0),
      gctok_(r->global),
      sctok_(r->spill) {}

Worker::~Worker() { drop_timers(); }  // nothing left after a shutdown; this covers a failed start

void Worker::drop_timer_inbox() noexcept {
  struct Dropper {
    void push_back(TimerEntry* e) noexcept {
      e->cancel();  // destroys the callback (and what it captured) even if a handle lives on
      e->unref();   // the heap's reference, which the inbox held
    }
  } drop;
  timer_inbox.drain_into(drop);
}

void Worker::drop_timers() noexcept {
  drop_timer_inbox();
  timers.cancel_all();
}

void Worker::sample_stacks() noexcept {
  // Fibres alive now: started minus ended-with-a-fibre, summed over every worker. Every
  // `started` is read before any `ended`, so a race can only make this low, never report
  // a peak that did not happen (relaxed: each counter has a single writer).
  uint64_t started_all = 0, ended_all = 0;
  for (Worker* w : rt->workers) started_all += w->started.load(std::memory_order_relaxed);
  for (Worker* w : rt->workers)
    ended_all += w->ended.load(std::memory_order_relaxed) - w->ended_unstarted.load(std::memory_order_relaxed);
  const uint64_t in_use = started_all > ended_all ? started_all - ended_all : 0;
  if (in_use > stacks_peak.load(std::memory_order_relaxed)) stacks_peak.store(in_use, std::memory_order_relaxed);
}

void Worker::collect_queued(std::vector<TaskHeader*>& out) {
  inbox.drain_into(pinned);  // as next_task would; the order is kept
  // Tasks waiting in the global queues come into our ring first (as from_global takes
  // them), as many as fit, so that they are listed too.
  // relaxed: a hint, as in from_global.
  while (rt->global_len.load(std::memory_order_relaxed) > 0 && ring.size() < RunQueue::kCap) {
    TaskHeader* buf[32];
    const uint32_t room = RunQueue::kCap - ring.size();
    const std::size_t n = take_global(buf, room < 32 ? room : 32);
    if (n == 0) break;
    for (std::size_t i = 0; i < n; ++i) push_ring(buf[i]);  // fits: room was checked
  }
  // Reserve first: once the run queue is emptied below, nothing may throw.
  out.reserve(out.size() + 2 + pinned.size() + ring.size());
  auto take = [&out](TaskHeader* t) {
    t->ref();
    out.push_back(t);
  };
  if (lifo) take(lifo);
  if (pending) take(pending);
  for (TaskHeader* t : pinned) take(t);
  // Thieves only ever shrink the ring, and only we push: what we pop fits back.
  TaskHeader* buf[RunQueue::kCap];
  uint32_t n = 0;
  while (n < RunQueue::kCap && (buf[n] = ring.pop())) ++n;
  for (uint32_t i = 0; i < n; ++i) {
    take(buf[i]);
    ring.push(buf[i]);
  }
}

bool Worker::has_local_work() const noexcept {
  return lifo != nullptr || !pinned.empty() || !inbox.empty() || !ring.empty() || !timer_inbox.empty();
}

void Worker::push_ring_full(TaskHeader* t) {
  do {
    // Full: move the older half out where any worker can take it. Tasks that had run
    // before (woken ones) go to the spill queue, new ones to the back of the global queue.
    TaskHeader* buf[RunQueue::kCap / 2];
    const uint32_t n = ring.take_half(buf);
    TaskHeader* fresh[RunQueue::kCap / 2];
    uint32_t resumed = 0, unstarted = 0;
    for (uint32_t i = 0; i < n; ++i) {
      if (task_state::started(buf[i]))
        buf[resumed++] = buf[i];
      else
        fresh[unstarted++] = buf[i];
    }
    count(tasks_spilled, n);
    if (resumed) rt->push_spill(buf, resumed);
    if (unstarted) rt->push_global(fresh, unstarted);
  } while (!ring.push(t));
}

bool Worker::push_local(TaskHeader* t, bool wake) {
  if (t->word.load(std::memory_order_relaxed) & kPinned) {
    if (wake && lifo == nullptr)
      lifo = t;
    else
      pinned.push_back(t);
    return false;
  }
  if (wake) {
    TaskHeader* old = std::exchange(lifo, t);
    if (!old) return false;  // the LIFO slot is not stealable: nothing for others
    if (old->word.load(std::memory_order_relaxed) & kPinned) {
      pinned.push_back(old);
      return false;
    }
    push_ring(old);
    return true;
  }
  push_ring(t);
  return true;
}

std::size_t Worker::take_global(TaskHeader** buf, std::size_t want) {
  // Woken tasks before new ones, except one time in four (new tasks must not starve
  // while wake-ups keep spilling).
  const bool spill_first = (++global_takes & 3) != 0;
  std::size_t n =
      spill_first ? rt->spill.try_dequeue_bulk(sctok_, buf, want) : rt->global.try_dequeue_bulk(gctok_, buf, want);
  if (n == 0)
    n = spill_first ? rt->global.try_dequeue_bulk(gctok_, buf, want) : rt->spill.try_dequeue_bulk(sctok_, buf, want);
  // relaxed: the count is only ever high, never low (decremented after the dequeue).
  if (n) rt->global_len.fetch_sub(int64_t(n), std::memory_order_relaxed);
  return n;
}

TaskHeader* Worker::from_global() {
  // relaxed: a hint; the parking protocol re-reads it after its fence.
  if (rt->global_len.load(std::memory_order_relaxed) <= 0) return nullptr;
  // Take a batch: one to run now, the rest into our queue (stealable by others).
  TaskHeader* buf[32];
  const uint32_t room = (RunQueue::kCap - ring.size()) / 2;
  const std::size_t n = take_global(buf, room < 32 ? (room ? room : 1) : 32);
  if (n == 0) return nullptr;
  for (std::size_t i = 1; i < n; ++i) push_ring(buf[i]);
  return buf[0];
}

TaskHeader* Worker::steal() {
  const auto& all = rt->workers;
  const unsigned n = static_cast<unsigned>(all.size());
  const unsigned start = next_random() % n;
  for (unsigned k = 0; k < n; ++k) {
    Worker* v = all[(start + k) % n];
    if (v == this) continue;
    count(steal_attempts);
    if (TaskHeader* t = v->ring.steal_into(ring)) {
      count(steals);
      count(tasks_stolen, 1 + ring.size());  // our ring was empty: the rest came with it
      if (TraceRing* r = tracing()) [[unlikely]]
        trace_event(this, r, TraceKind::steal, 0, 1 + ring.size(), uint16_t(v->index));
      return t;
    }
  }
  return nullptr;
}

int64_t Worker::run_timers(int64_t* now) {
  struct ToHeap {
    TimerHeap& h;
    void push_back(TimerEntry* e) { h.push(e); }
  } to_heap{timers};
  timer_inbox.drain_into(to_heap);
  if (timers.empty()) return INT64_MAX;
  TraceSource src(this, WakeSource::timer);
  const int64_t t_now = monotonic_ns();
  if (now) *now = t_now;
  timers.fire_due(t_now, [this](TimerEntry* t) {
    count(timers_fired);
    if (TraceRing* r = tracing()) [[unlikely]]
      trace_event(this, r, TraceKind::timer_fired, reinterpret_cast<uintptr_t>(t->task));
    if (t->task) {
      wake_task_in(rt, t->task, false);  // FIFO: a batch of due timers resumes in deadline order
    } else {
      try {
        TaskOptions o{.name = "call_later"};
        (void)spawn_on(rt, &o, std::move(t->callback));
      } catch (...) {
        rt->sink->report(
            {Report::Kind::callback_failed, "", "timer callback could not be scheduled", std::current_exception()});
      }
    }
  });
  return timers.next_deadline();
}

TaskHeader* Worker::next_task_general() {
  const uint64_t turn = tick.load(std::memory_order_relaxed) + 1;
  tick.store(turn, std::memory_order_relaxed);  // single writer: no RMW needed
  // The trace: a task taken from the LIFO slot or the run queue on a turn without a
  // global, reactor or timer look is taken straight (Worker::trace_straight); the other
  // ways may bring a task woken after this loop's last step ended, or take a while.
  const bool global_turn = turn == next_global_turn;
  if (global_turn) next_global_turn = turn + 61;
  if (turn >= common_until) {
    // A global or timer turn (or the shuffle, or the first turn): the common turns are
    // those after this one up to the next global turn or the next timer turn, whichever
    // comes first; none with the shuffle.
    common_until = shuffle ? 0 : turn + 1 + std::min<uint64_t>(next_global_turn - turn - 1, 15 - (turn & 15));
  }
  if (global_turn) {
    trace_not_straight();
    // Neither a busy run queue nor busy I/O may starve the other: look at the reactor
    // without blocking every 61 turns, and take from the global queue.
    if (reactor.sources() != 0) poll_now();
    if (TaskHeader* t = from_global()) return t;
  }
  if ((turn & 15) == 0) {
    trace_not_straight();
    run_timers();
  }
  if (shuffle) shuffle_ready();
  if (lifo) {
    if (lifo_streak < kLifoStreak || (ring.empty() && pinned.empty())) {
      ++lifo_streak;
      return std::exchange(lifo, nullptr);
    }
    // Two tasks waking each other would otherwise keep the queue waiting forever.
    TaskHeader* t = std::exchange(lifo, nullptr);
    if (t->word.load(std::memory_order_relaxed) & kPinned)
      pinned.push_back(t);
    else
      push_ring(t);
  }
  lifo_streak = 0;
  TaskHeader* t = nullptr;
  if ((turn & 1) && !pinned.empty()) {
    trace_not_straight();
    t = pinned.front();
    pinned.pop_front();
    return t;
  }
  if (inbox.drain_into(pinned)) {
    trace_not_straight();
    t = pinned.front();
    pinned.pop_front();
    return t;
  }
  if ((t = alone ? ring.pop_alone() : ring.pop())) return t;
  trace_not_straight();
  if (!pinned.empty()) {
    t = pinned.front();
    pinned.pop_front();
    return t;
  }
  return from_global();
}

void Worker::shuffle_ready() {
  // Only ever moves tasks between this worker's own structures with owner operations
  // (pop/push), so thieves see an ordinary queue. Every task stays ready exactly once.
  const uint32_t r = next_random();
  if (lifo && (r & 1)) {  // half the time the just-woken task loses its head start
    TaskHeader* t = std::exchange(lifo, nullptr);
    if (t->word.load(std::memory_order_relaxed) & kPinned)
      pinned.push_back(t);
    else
      push_ring(t);
  }
  // Rotate the run queue by a random amount (at most 15 places per turn), so the task
  // at its head is not always the oldest.
  for (uint32_t k = (r >> 1) % 16, n = ring.size(); k && n > 1; --k) {
    TaskHeader* t = ring.pop();
    if (!t) break;
    ring.push(t);  // we just freed a slot: it fits
  }
  if (pinned.size() > 1 && (r & 2)) std::swap(pinned.front(), pinned[(r >> 5) % pinned.size()]);
}

TaskHeader* Worker::probe(bool multi, bool io) {
  TaskHeader* t = nullptr;
  if (inbox.drain_into(pinned)) {
    t = pinned.front();
    pinned.pop_front();
    return t;
  }
  if ((t = from_global())) return t;
  if (!multi) return nullptr;
  if ((t = steal())) return t;
  return io ? steal_io() : nullptr;
}

TaskHeader* Worker::search() {
  const bool multi = rt->workers.size() > 1;
  if (!searching) searching = rt->idle.try_start_searching();
  // A searcher that finds work stops searching at once (not after it returns): another
  // loop that handed it the work is about to go idle and may ask for the place.
  if (TaskHeader* t = probe(multi, true)) {
    if (searching) stop_searching();
    return t;
  }
  if (rt->stopping.load(std::memory_order_acquire)) return nullptr;
  // A loop that owns fds is woken by the kernel through its own epoll: spinning would
  // only take the CPU from the work it waits for (on a 2-core machine serving loopback
  // clients, 50 us of spin cost 20% of the server's CPU), so it parks after one pass.
  if (reactor.sources() != 0) return nullptr;
  // Only a counted searcher spins (spin_policy.hpp). One that was refused before its
  // pass asks again for a moment (SpinPolicy::kPlaceWait looks, a few pauses apart):
  // two loops handing work back and forth go idle a moment after each other, and the
  // searcher that holds the place is then about to find the work just handed to it.
  // Parking instead costs the next hand-over a wake-up.
  for (unsigned k = 0; !searching && k < SpinPolicy::kPlaceWait; ++k) {
    if ((searching = rt->idle.try_start_searching())) break;
    if (!inbox.empty()) break;  // our own work came meanwhile: take it (next turn)
    for (int p = 0; p < 4; ++p) cpu_relax();
  }
  if (!searching) return nullptr;
  const int64_t start = monotonic_ns();
  const int64_t budget = rt->spin.budget(start);
  if (budget == 0) return nullptr;
  SpinPolicy::Pace pace(start, budget);
  SpinPolicy::End end = SpinPolicy::End::found;
  for (unsigned i = 1;; ++i) {
    // The pause before the next probe, cut short by work in our inbox or the global
    // queue (one load each of a count: a pinned task handed to us is taken at once).
    // relaxed global_len: a hint; probe() takes the work.
    pace.pause([this] { return !inbox.empty() || rt->global_len.load(std::memory_order_relaxed) > 0; });
    // Other loops' reactors, timers and our own reactor every 8th probe: they cost
    // system calls or a look at the clock.
    const bool slow = (i & 7) == 0;
    if (TaskHeader* t = probe(multi, slow)) {
      stop_searching();
      rt->spin.record(SpinPolicy::End::found, budget);
      return t;
    }
    if (rt->stopping.load(std::memory_order_acquire)) return nullptr;
    if (slow) {
      run_timers();                            // a due timer may have made a task ready here
      if (reactor.sources() != 0) poll_now();  // so may I/O (a fd came)
      if (has_local_work()) break;             // park() sees it and does not sleep
    }
    if (!pace.go_on(monotonic_ns(), end)) break;
  }
  rt->spin.record(end, budget);
  return nullptr;
}

void Worker::stop_searching() noexcept {
  searching = false;
  if (!rt->idle.stop_searching()) return;
  // The last searcher: a publisher may have skipped its wake-up because it saw us
  // searching. seq_cst fence: our decrement comes before the look below (pairs with the
  // publisher's fence in Idle::notify_work; see idle.hpp). relaxed loads: ordered by it.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool work = rt->global_len.load(std::memory_order_relaxed) > 0;
  for (Worker* v : rt->workers) work = work || !v->ring.empty();
  if (work) rt->notify_work();
}

TaskHeader* Worker::steal_io() {
  // Events wait in the epoll of the loop that owns their fds. If that loop's thread is
  // preempted by the OS (a timeslice is milliseconds), its connections would stall while
  // we sit idle: take its ready events and run the tasks they wake here. A parked owner
  // is woken by its epoll itself and needs no help, and neither does one that has made a
  // loop turn since our last look here (it polls its epoll when it goes idle, and every
  // 61 turns while busy): polling the epoll of a loop that is running fine costs both
  // loops a system call on a contended epoll for nothing.
  const auto& all = rt->workers;
  const unsigned n = static_cast<unsigned>(all.size());
  const unsigned start = next_random() % n;
  for (unsigned k = 0; k < n; ++k) {
    const unsigned vi = (start + k) % n;
    Worker* v = all[vi];
    // relaxed: all three are hints; a stale one costs one poll or one missed chance.
    if (v == this || v->reactor.sources() == 0 || v->parked.load(std::memory_order_relaxed)) continue;
    const uint64_t turn = v->tick.load(std::memory_order_relaxed);
    if (std::exchange(io_seen[vi], turn) != turn) continue;  // it moved on since our last look
    int got;
    {
      TraceSource src(this, WakeSource::fd);
      got = v->reactor.poll_foreign();
    }
    if (got == 0) continue;
    count(io_steals);
    count(reactor_events, uint64_t(got));
    if (TraceRing* r = tracing()) [[unlikely]]
      trace_event(this, r, TraceKind::steal, 0, uint32_t(got), uint16_t(v->index), 1);
    // The woken tasks came to us (make_ready on this worker): the LIFO slot, the ring.
    if (lifo) return std::exchange(lifo, nullptr);
    if (TaskHeader* t = ring.pop()) return t;
  }
  return nullptr;
}

void Worker::poll_now() {
  int got;
  {
    TraceSource src(this, WakeSource::fd);
    got = reactor.poll(0);
  }
  count(reactor_events, uint64_t(got));
  if (got > 0) {
    if (TraceRing* r = tracing()) [[unlikely]]
      trace_event(this, r, TraceKind::poll, 0, uint32_t(got));
  }
}

bool Worker::others_may_hold_io() const noexcept {
  for (Worker* v : rt->workers)
    // relaxed: hints, as in steal_io().
    if (v != this && v->reactor.sources() != 0 && !v->parked.load(std::memory_order_relaxed)) return true;
  return false;
}

void Worker::park() {
  count(parks);
  rt->idle.park(this, searching);
  searching = false;
  // seq_cst fence: our registration as parked comes before the re-check below (pairs
  // with the fence in Idle::notify_*; see idle.hpp).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool work = has_local_work() || rt->global_len.load(std::memory_order_relaxed) > 0 ||
              rt->stopping.load(std::memory_order_relaxed);
  for (Worker* v : rt->workers) work = work || (v != this && !v->ring.empty());
  if (!work) {
    // One clock reading serves the whole park (the timers', the watcher's and the
    // reactor's): taken a few microseconds before the sleep, it can only make the sleep
    // end that much later than its deadline, never earlier.
    int64_t now = -1;
    const int64_t next = run_timers(&now);
    if (!has_local_work()) {
      int64_t deadline = next == INT64_MAX ? -1 : next;
      // While another loop with I/O is running (or preempted), one parked worker (the
      // watcher) wakes now and then to take the events it has not looked at (steal_io);
      // a parked runtime sleeps for good. relaxed: the flag only spreads the duty; two
      // watchers for a moment, or none until the next park, cost nothing but a delay.
      bool watcher = false;
      if (rt->workers.size() > 1 && others_may_hold_io()) {
        if (now < 0) now = monotonic_ns();
        const int64_t watch = now + kIoStealPark;
        if ((deadline < 0 || deadline > watch) && !rt->io_watcher.exchange(true, std::memory_order_relaxed)) {
          watcher = true;
          deadline = watch;
        }
      }
      TraceRing* const r = tracing();
      if (r) [[unlikely]] {
        const uint8_t why = uint8_t((next != INT64_MAX ? kParkTimer : 0) | (reactor.sources() != 0 ? kParkFd : 0) |
                                    (watcher ? kParkIoWatch : 0));
        const int64_t timeout = deadline < 0 ? -1 : std::max<int64_t>(0, deadline - monotonic_ns());
        trace_event(this, r, TraceKind::park_begin, uint64_t(timeout), 0, 0, why);
      }
      int got;
      {
        TraceSource src(this, WakeSource::fd);
        got = reactor.park(deadline, now);  // on a futex if we watch no fds, else in epoll (reactor.hpp)
      }
      count(reactor_events, uint64_t(got));
      if (r) [[unlikely]]
        trace_event(this, r, TraceKind::park_end, 0, uint32_t(got));
      if (watcher) rt->io_watcher.store(false, std::memory_order_relaxed);
    }
  }
  // A notifier that took us off the parked list made us a searcher, or not (pinned work).
  if (rt->idle.unpark_self(this) == Idle::Unparked::searcher) searching = true;
}

// Debug mode's slow steps, and the trace if on (out of line: the trace's common path
// keeps no call that needs a frame).
__attribute__((noinline)) void Worker::step_began_slow(TaskHeader* t, bool first) noexcept {
  step_start.store(monotonic_ns(), std::memory_order_relaxed);
  if (TraceRing* r = tracing()) trace_step_begin_inline(this, r, t, first);
}

void Worker::step_began_hooked(TaskHeader* t, bool first) noexcept {
  if (slow_step_ns) [[unlikely]]
    return step_began_slow(t, first);
  if (TraceRing* r = tracing()) trace_step_begin_inline(this, r, t, first);
}

void Worker::step_ended_hooked(TaskHeader* t, bool ended) noexcept {
  if (tracing()) trace_step_end_inline(this, ended);
  if (slow_step_ns) step_ended_slow(t);
}

void Worker::start_fibre(TaskHeader* t) {
  std::size_t size = 0;
  if (t->word.load(std::memory_order_relaxed) & kCustomStack) {
    size = t->extra()->stack_size;  // kCustomStack: made at spawn, fixed since
  }
  Stack s = stacks.take(size);
  void* tf = san::tsan_create();
  boost::context::fiber f;
  try {
    f = make_fibre(t, s, &rt->stacks, tf);
  } catch (...) {
    san::tsan_destroy(tf);
    stacks.give(s);
    throw;
  }
  task_state::start(t);
  count(started);
  if (const uint64_t turn = tick.load(std::memory_order_relaxed); turn - clock_turn >= kClockTurns) {
    clock_ns = monotonic_ns();  // for the stamp of this fibre's start (fibre_main)
    clock_turn = turn;
    if constexpr (kMetrics) sample_stacks();  // the fibre count's peak, sampled while busy too
  }
  current.store(t, std::memory_order_relaxed);
  step_began(t, true);
#if defined(SPINDLE_ASAN)
  san::start_switch(&asan_fake, s.guard_end(), s.usable());
#endif
  san::tsan_switch_to(tf);
  switched_back(std::move(f).resume());
}

void Worker::run_task(TaskHeader* t) {
  if (!task_state::started(t)) {
    const uint32_t w0 = t->word.load(std::memory_order_acquire);
    if ((w0 & kCancelReq) || (rt->closing.load(std::memory_order_relaxed) && !(w0 & kLateSpawn))) {
      finish_unstarted(t, Status::cancelled, nullptr);  // never runs its body
      count(cancelled);
      count(ended_unstarted);
      bump(ended);
      return;
    }
    try {
      start_fibre(t);
    } catch (...) {
      finish_unstarted(t, Status::exception, std::current_exception());  // e.g. no memory for a stack
      count(failed);
      count(ended_unstarted);
      bump(ended);
    }
    return;
  }
  TaskFrame* fr = t->frame;
  boost::context::fiber f = std::move(fr->ctx);
  task_state::run(t);
  current.store(t, std::memory_order_relaxed);
  step_began(t, false);
#if defined(SPINDLE_ASAN)
  san::start_switch(&asan_fake, fr->stack.guard_end(), fr->stack.usable());
#endif
  san::tsan_switch_to(fr->tsan_fiber);
  switched_back(std::move(f).resume());
}

void Worker::switched_back(boost::context::fiber&& f) {
  san::finish_switch(asan_fake, nullptr, nullptr);
  // Fibres may have switched among themselves (suspend_current's direct switch): the
  // one that came back is `current`, not necessarily the one we resumed.
  TaskHeader* t = current.load(std::memory_order_relaxed);
  step_ended(t, !f);                                  // t is still referenced here (an ended task is unref'd below)
  current.store(nullptr, std::memory_order_relaxed);  // owner only: no RMW needed
  if (tsan_to_destroy) {
    // The fibre ended (fibre_main handed us its TSan fibre to destroy).
    san::tsan_destroy(std::exchange(tsan_to_destroy, nullptr));
  }
  if (!f) {
    // The fibre's last step: a late wake-up (NOTIFIED) no longer matters.
    yielding = false;
    task_state::end(t);
    bump(ended);
    t->unref();  // the scheduler's reference
    return;
  }
  t->frame->ctx = std::move(f);
  after_suspend(t);
}

void Worker::requeue_yielded_slow(TaskHeader* t) noexcept {
  if (!(t->word.load(std::memory_order_relaxed) & kPinned)) {
    push_ring_full(t);  // requeue_yielded's push found the ring full
    if (!alone) rt->notify_work();
  } else {
    pinned.push_back(t);  // a pinned task runs only here, its home (as push_local does)
  }
}

void Worker::publish_waited(TaskHeader* t) noexcept {
  // Suspended (its context is in the frame): IDLE, or READY if it was woken meanwhile.
  if (task_state::publish_suspended(t) == task_state::Suspended::requeue) {
    // Woken while it ran: back of this worker's queue (the common case is handled here
    // without the general make_ready).
    if (!(t->word.load(std::memory_order_relaxed) & kPinned)) {
      push_ring(t);
      if (!alone) rt->notify_work();
    } else {
      rt->make_ready(t, false);
    }
  }
}

void Worker::main() {
  if (hosted) [[unlikely]]
    loop<true>();
  else
    loop<false>();
}

template <bool Hosted>
void Worker::loop() {
  alone = rt->workers.size() == 1;  // the vector is complete before any loop starts
  set_current_worker(this);
  tsan_fiber = san::tsan_current();
  eh_globals = thread_eh_globals();
  AltStack alt;                           // so a fibre's stack overflow can be reported
  io_seen.assign(rt->workers.size(), 0);  // every worker exists once any thread runs
  clock_ns = monotonic_ns();
  int64_t idle_start = 0;  // start of the current idle spell (0: busy), for busy time
  for (;;) {
    // Hosted by run()'s caller, whose main task has ended: give the loop back between two
    // tasks (a thread of its own takes it over; see host_first_loop). acquire: pairs with
    // the completer's release store. Compiled out of the loops on threads of their own.
    if (Hosted && host_release.load(std::memory_order_acquire)) [[unlikely]] {
      if (idle_start != 0) {
        if constexpr (kMetrics) {
          // relaxed: single writer, as below.
          idle_ns.store(idle_ns.load(std::memory_order_relaxed) + (monotonic_ns() - idle_start),
                        std::memory_order_relaxed);
          idle_since.store(0, std::memory_order_relaxed);
        }
      }
      if (searching) stop_searching();  // the last searcher may wake another
      break;
    }
    TaskHeader* t = pending ? std::exchange(pending, nullptr) : next_task();
    if (!t) {
      count(empty_turns);
      if (idle_start == 0) {
        if constexpr (kMetrics) {
          idle_start = monotonic_ns();
          idle_since.store(idle_start, std::memory_order_relaxed);
          sample_stacks();  // a loop going idle is a cheap moment to sample the peak
        } else {
          idle_start = 1;  // only marks the spell (the clock is refreshed at its end)
        }
      }
      if ((t = search())) count(search_found);
    }
    if (t) {
      if (idle_start != 0) {
        // relaxed: single writer; a metrics reader may see the two stores apart, which
        // only makes one snapshot's busy time off by this spell.
        clock_ns = monotonic_ns();
        clock_turn = tick.load(std::memory_order_relaxed);
        if constexpr (kMetrics) {
          idle_ns.store(idle_ns.load(std::memory_order_relaxed) + (clock_ns - idle_start), std::memory_order_relaxed);
          idle_since.store(0, std::memory_order_relaxed);
        }
        idle_start = 0;
      }
      if (searching) stop_searching();  // the last searcher may wake another
      run_task(t);
      continue;
    }
    if (rt->stopping.load(std::memory_order_acquire)) break;
    park();
  }
  trace_not_straight();  // the last step's end, if noted
  if (searching) {
    searching = false;
    rt->idle.stop_searching();
  }
  set_current_worker(nullptr);
}

}  // namespace spindle::detail
