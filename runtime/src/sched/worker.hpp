// A worker thread and the event loop it runs.
//
// Owns: its run queue (others may steal from it), its LIFO slot and pinned queue (only
// it touches them), an inbox (any thread pushes pinned tasks it made ready), its reactor
// (epoll + wake-up eventfd), its stack cache and its registry shard.
//
// One turn of the loop: take the next ready task — LIFO slot (at most kLifoStreak times
// in a row), pinned queue, inbox, run queue, and the global queue first on every 61st
// turn so that a busy run queue cannot starve it — and run its fibre until it suspends.
// With nothing ready: search (steal half of another worker's queue, take from the global
// queue, take the ready events of a loop that is not parked), spinning for a while if the
// spin policy says it pays (spin_policy.hpp), then park: on a futex if the loop watches
// no fds, else in epoll_wait (reactor.hpp). While another loop with I/O runs, a parked
// loop wakes every kIoStealPark to take the events that loop has not looked at (its
// thread may be preempted for a whole OS timeslice) if it has made no turn meanwhile; one
// parked loop at a time does this.
#pragma once

#include <boost/context/fiber.hpp>
#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <source_location>
#include <thread>
#include <vector>

#include <spindle/detail/task_header.hpp>

#include "sched/inbox.hpp"
#include "sched/reactor.hpp"
#include "observe/registry.hpp"
#include "observe/trace_recorder.hpp"
#include "sched/run_queue.hpp"
#include "core/stack_pool.hpp"
#include "sched/timer_heap.hpp"

// Metrics can be compiled out of the library (meson -Dmetrics=false defines
// SPINDLE_METRICS=0 for its own sources only): the metrics-only counters below are then
// never written (Worker::count is a no-op) and idle spells are not timed, so
// Runtime::metrics() reports zeros for them (metrics.hpp lists the fields). The struct
// keeps every field either way.
#ifndef SPINDLE_METRICS
#define SPINDLE_METRICS 1
#endif

namespace spindle::detail {

inline constexpr bool kMetrics = SPINDLE_METRICS != 0;

class RuntimeImpl;

struct Worker {
  Worker(RuntimeImpl* rt, unsigned index);
  ~Worker();

  RuntimeImpl* const rt;
  const unsigned index;

  RunQueue ring;
  TaskHeader* lifo = nullptr;      // owner only
  unsigned lifo_streak = 0;        // owner only
  std::deque<TaskHeader*> pinned;  // owner only: ready pinned tasks
  Inbox inbox;                     // pinned tasks readied by other threads
  Reactor reactor;
  StackCache stacks;
  RegistryShard registry;
  TimerHeap timers;                     // owner only
  BasicInbox<TimerEntry*> timer_inbox;  // timers armed by other threads

  // The task whose fibre is running. Written only by the owner; an atomic so that a task
  // dump on another thread may read which task each loop runs (relaxed: a diagnostic; a
  // relaxed store is a plain store on x86, so the switch path pays nothing).
  std::atomic<TaskHeader*> current{nullptr};
  bool yielding = false;  // owner only: `current` asked to be requeued (yield)
  // The runtime has this one worker only (set before the loop starts, never changed): no
  // thief ever touches the run queue, so its owner pops without a CAS (pop_alone).
  bool alone = false;
  TaskHeader* pending = nullptr;  // owner only: picked by a fibre, to be started next
  // The worker loop's own context while one of its fibres runs (empty while the loop
  // runs): whichever fibre runs on this thread switches back to it; a direct switch
  // between fibres (suspend_current) leaves it where it is. Owner thread only.
  boost::context::fiber loop_ctx;
  const void* stack_bottom = nullptr;  // the worker thread's stack bounds (ASan)
  std::size_t stack_size = 0;
  std::atomic<uint64_t> tick{0};  // loop turns (next_task calls); owner writes, metrics read
  bool searching = false;
  bool in_parked_list = false;   // guarded by Idle's mutex
  bool woken_searching = false;  // guarded by Idle's mutex: a notifier made it a searcher
  // Mirrors in_parked_list for notifiers' fast path (written under Idle's mutex, read
  // without it after a seq_cst fence: see Idle::notify_worker).
  std::atomic<bool> parked{false};
  uint32_t rng;
  const bool shuffle;  // Options::shuffle (debug): see shuffle_ready()
  // What watches each step's beginning and end: kStepSlow (debug mode's slow steps) and
  // kStepTrace (an execution trace records). One byte for both, so that the switch paths
  // pay one predictable branch when neither is on. kStepSlow is set at construction;
  // kStepTrace by trace start and stop on any thread (relaxed: the hooked path then reads
  // the ring pointer itself, with acquire; a turn or two late or early only moves where
  // the trace begins or ends).
  static constexpr uint8_t kStepSlow = 1, kStepTrace = 2;
  std::atomic<uint8_t> step_hooks{0};
  // Debug mode's slow steps (step_watch.hpp): slow_step in ns, 0 when debug is off.
  // step_start: when the running step began, written by the owner at each resume
  // (relaxed: the watchdog only samples it; see StepWatch::run for why a stale pairing
  // with `current` cannot report early). step_reported: the start of the last step
  // reported, claimed by exchange so that the watchdog and the loop (at the step's end)
  // report each step once between them.
  const int64_t slow_step_ns;
  std::atomic<int64_t> step_start{0};
  std::atomic<int64_t> step_reported{0};
  /// A step of t begins on this loop (first: its fibre's first step).
  void step_began(TaskHeader* t, bool first) noexcept {
    if (step_hooks.load(std::memory_order_relaxed)) [[unlikely]]
      step_began_hooked(t, first);
  }
  /// The running step of t ends (ended: its body returned).
  void step_ended(TaskHeader* t, bool ended) noexcept {
    if (step_hooks.load(std::memory_order_relaxed)) [[unlikely]]
      step_ended_hooked(t, ended);
  }
  /// A direct switch: the step of `from` ends and one of `to` begins; `current` names
  /// `to` afterwards. `hooks`: step_hooks, read once by the switching fibre.
  void step_switch(TaskHeader* from, TaskHeader* to, uint8_t hooks) noexcept {
    if (hooks) [[unlikely]] {
      step_ended_hooked(from, false);
      current.store(to, std::memory_order_relaxed);
      step_began_hooked(to, false);
    } else {
      current.store(to, std::memory_order_relaxed);
    }
  }
  void step_began_hooked(TaskHeader* t, bool first) noexcept;
  void step_ended_hooked(TaskHeader* t, bool ended) noexcept;
  void step_began_slow(TaskHeader* t, bool first) noexcept;
  void step_ended_slow(TaskHeader* t) noexcept;  // step_watch.cpp

  // The execution trace (trace_recorder.hpp): the ring this loop records into while a
  // trace is on, else null. Written by start/stop on any thread, read by the owner at
  // each hook: acquire (a plain load on x86), so a ring made by start_trace is complete
  // before the loop writes into it. trace_ring owns the ring (made by the first start,
  // kept until the worker goes). trace_src: what the loop is doing when it wakes a task
  // outside a task's step (firing timers, dispatching fd events). Owner only.
  std::atomic<TraceRing*> trace{nullptr};
  std::unique_ptr<TraceRing> trace_ring;
  WakeSource trace_src = WakeSource::task;
  // A step's end and the next step's begin share one clock reading, and one event on
  // the ring, when the loop goes straight from the one to the other (trace_hooks.hpp).
  // trace_straight: the last step's end is noted here and not yet on the ring, and the
  // loop has since taken its next task straight from its own run queue or LIFO slot (no
  // timer, reactor or global turn, no search, nothing else recorded); whatever breaks
  // that writes the end out first (trace_end_out). trace_ts: that end's reading;
  // trace_end: its kind as the begin that follows would write it (TraceKind::next...;
  // a suspension's place stays in trace_note.where). Owner only, but for
  // trace_straight, which trace start also clears before it publishes the ring
  // (relaxed: `trace`'s release/acquire orders that store before the loop's loads; a
  // loop still ending a step of the session before sets it with a reading it has just
  // taken, and the writer ignores the end of a step it has not seen begin).
  int64_t trace_ts = 0;
  TraceKind trace_end = TraceKind::next;
  std::atomic<bool> trace_straight{false};
  struct {
    std::source_location where;
    SuspendKind kind;
    bool pending;  // noted by trace_suspend, written with the step's end
  } trace_note{std::source_location{}, SuspendKind::wait, false};
  /// The loop's next task does not come straight after its last step (trace_straight):
  /// the step's end, if noted, goes on the ring now.
  void trace_not_straight() noexcept {
    if constexpr (kTrace)
      if (trace_straight.load(std::memory_order_relaxed)) [[unlikely]]  // relaxed: see above
        trace_end_out(this);
  }
  TraceRing* tracing() const noexcept {
    if constexpr (kTrace)
      return trace.load(std::memory_order_acquire);
    else
      return nullptr;
  }
  /// Sets trace_src for a scope (timers, polls): two byte stores, nothing when compiled out.
  struct TraceSource {
    Worker* w;
    WakeSource old;
    TraceSource(Worker* w_, WakeSource s) noexcept : w(w_), old(w_->trace_src) {
      if constexpr (kTrace) w->trace_src = s;
    }
    ~TraceSource() {
      if constexpr (kTrace) w->trace_src = old;
    }
  };

  // Counters: written only by this worker (single writer, relaxed), read by anyone.
  std::atomic<uint64_t> ended{0};
  std::atomic<uint64_t> spawned{0};
  // Metrics (metrics.cpp): the same rule, bumped through count() (compiled out when
  // !kMetrics). Most are bumped off the hot paths (idle, stealing, timers,
  // cancellation); `started` is one store per new fibre.
  std::atomic<uint64_t> started{0};          // fibres started here
  std::atomic<uint64_t> ended_unstarted{0};  // of `ended`: tasks that ended without a fibre
  std::atomic<uint64_t> cancelled{0};        // tasks that ended cancelled here
  std::atomic<uint64_t> failed{0};           // tasks that ended with an exception here
  std::atomic<uint64_t> empty_turns{0};      // next_task calls that found nothing
  std::atomic<uint64_t> search_found{0};     // tasks found by search() (not by next_task)
  std::atomic<uint64_t> steal_attempts{0};   // other workers' queues probed
  std::atomic<uint64_t> steals{0};           // probes that took tasks
  std::atomic<uint64_t> io_steals{0};        // poll_foreign calls that found events
  std::atomic<uint64_t> tasks_spilled{0};    // moved out of a full run queue
  std::atomic<uint64_t> tasks_stolen{0};     // tasks those probes took
  std::atomic<uint64_t> parks{0};
  std::atomic<uint64_t> reactor_events{0};  // epoll events handled (wake-ups included)
  std::atomic<uint64_t> timers_fired{0};
  std::atomic<int64_t> idle_ns{0};       // time spent searching or parked, finished spells
  std::atomic<int64_t> idle_since{0};    // start of the current idle spell, 0 when busy
  std::atomic<uint64_t> stacks_peak{0};  // highest fibre count this worker sampled
  void sample_stacks() noexcept;         // updates stacks_peak (reads every worker)

  // A coarse clock for task ages (owner only): a fibre's start is stamped with it, since
  // reading the clock at every start would cost more than the start's other bookkeeping
  // together. Refreshed when a loop ends an idle spell and at a start at least
  // kClockTurns turns after the last refresh, so a stamp is at most that many turns old.
  static constexpr uint64_t kClockTurns = 256;
  int64_t clock_ns = 0;
  uint64_t clock_turn = 0;  // tick at the last refresh

  // Sanitizer state of the worker's own (thread) stack.
  void* tsan_fiber = nullptr;
  void* asan_fake = nullptr;
  void* tsan_to_destroy = nullptr;  // the fibre that just ended, destroyed after the switch
  void* eh_globals = nullptr;       // this thread's C++ exception globals (fibre.cpp)
  // Turns are numbered by tick. The global/reactor turn comes every 61 turns (the first
  // is turn 61), a timer turn every 16 (tick a multiple of 16). common_until: no turn
  // after the general turn that set it and before it is either, and there is no
  // shuffle, so next_task_common's one comparison stands for those three tests. Set
  // again by the first general turn at or past it. Owner only.
  uint64_t next_global_turn = 61;
  uint64_t common_until = 0;

  std::thread thread;
  // Loop 0 of spindle::run runs on the thread that called run() until the main task has
  // ended (host_first_loop in runtime.cpp), then on a thread of its own for the shutdown.
  // `hosted`: this main() runs on the caller's thread (owner only). `host_release`: the
  // main task has ended, so main() returns between two tasks; written once by the main
  // task's completer, read by the owner.
  bool hosted = false;
  std::atomic<bool> host_release{false};

  void main();  // the loop: the thread's body (or, hosted, run()'s until released)
  template <bool Hosted>
  void loop();  // main()'s body (worker.cpp)

  /// Makes t runnable on this worker (owner thread only). `wake`: it was just woken,
  /// so it goes in the LIFO slot; otherwise at the back of the run queue.
  /// Returns true if it put a task where other workers can steal it (worth a notify).
  bool push_local(TaskHeader* t, bool wake);
  /// True if anything is queued here that this worker could run now.
  bool has_local_work() const noexcept;
  /// Owner thread only (a fibre of this worker): takes a reference on every task queued
  /// here (LIFO slot, pending, pinned queue, inbox, run queue) and appends it to `out`.
  /// The run queue is emptied and refilled in the same order, so thieves cannot take a
  /// task (and run it to its end) while we hold its pointer without a reference.
  void collect_queued(std::vector<TaskHeader*>& out);

  static void bump(std::atomic<uint64_t>& c, uint64_t by = 1) noexcept {
    // Single writer: a plain load+store is enough, and avoids a locked instruction.
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
  /// bump() for a metrics-only counter: nothing at all when metrics are compiled out
  /// (the argument is still evaluated, e.g. a reactor poll).
  static void count(std::atomic<uint64_t>& c, uint64_t by = 1) noexcept {
    if constexpr (kMetrics) bump(c, by);
  }

 private:
  /// One loop turn's pick (see the class comment).
  TaskHeader* next_task() {
    if (TaskHeader* t = next_task_common()) [[likely]]
      return t;
    return next_task_general();
  }

 public:
  /// One loop turn's pick, in full (every turn that is not a common one). Owner thread
  /// only.
  TaskHeader* next_task_general();
  /// The common turn of a busy loop, inline (nothing due this turn, nothing in the LIFO
  /// slot, the pinned queue or the inbox, the run queue not empty): one pop, with exactly
  /// next_task_general's outcome and bookkeeping. Null, with nothing changed, when this
  /// turn is not one (the caller then takes next_task_general or a path that calls it).
  /// Owner thread only.
  TaskHeader* next_task_common() noexcept {
    const uint64_t turn = tick.load(std::memory_order_relaxed) + 1;
    // The general path's tests, in one branch: a global/reactor turn, a timer turn or the
    // shuffle (all three: common_until), the LIFO slot, pinned work (ready or in the
    // inbox).
    if (turn < common_until && lifo == nullptr && pinned.empty() && inbox.empty()) [[likely]] {
      if (TaskHeader* t = alone ? ring.pop_alone() : ring.pop()) {
        tick.store(turn, std::memory_order_relaxed);  // single writer: no RMW needed
        lifo_streak = 0;
        return t;
      }
    }
    return nullptr;
  }

 private:
  /// Debug (Options::shuffle): perturbs the order of this loop's ready tasks.
  void shuffle_ready();
  uint32_t next_random() noexcept {
    rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;  // xorshift32
    return rng;
  }
  TaskHeader* search();
  /// One look for work: the inbox, the global queues, other workers' run queues, and
  /// (io) the ready events of other loops.
  TaskHeader* probe(bool multi, bool io);
  /// A searcher found work: it stops being one; the last wakes another if work waits.
  void stop_searching() noexcept;
  TaskHeader* steal();
  /// Dispatches the ready events of another loop that is not parked (Reactor::
  /// poll_foreign); returns a task they woke, now queued here.
  TaskHeader* steal_io();
  /// Polls the reactor without waiting (dispatching what is ready).
  void poll_now();
  /// Each loop's turn count (tick) at our last steal_io look at it (owner only).
  std::vector<uint64_t> io_seen;
  /// True if another loop with I/O sources is not parked (its events may wait for it).
  bool others_may_hold_io() const noexcept;
  /// How long a worker parks at most while others_may_hold_io().
  static constexpr int64_t kIoStealPark = 1'000'000;  // ns
  TaskHeader* from_global();
  void park();
  /// Moves timers from the inbox to the heap and fires those that are due. Returns the
  /// earliest remaining deadline (INT64_MAX if none). If it read the clock, and `now` is
  /// given, stores that reading there.
  int64_t run_timers(int64_t* now = nullptr);
  void run_task(TaskHeader* t);
  void switched_back(boost::context::fiber&& f);

 public:
  /// Once the loop has stopped (or from its destructor): cancels and releases every
  /// timer in the heap and the inbox. The inbox part may run on several threads at once
  /// (the inbox's lock hands each entry to one of them); the heap part only on the
  /// thread that owns the stopped worker (shutdown's).
  void drop_timers() noexcept;
  void drop_timer_inbox() noexcept;
  /// Publishes a fibre that has switched out: IDLE, or requeued if it yielded or was
  /// woken meanwhile. Called on this worker's thread after the switch (runtime_impl.hpp).
  inline void after_suspend(TaskHeader* t) noexcept;
  /// after_suspend for a fibre that yielded: back of the run queue (a pinned task: its
  /// pinned queue), its state untouched (runtime_impl.hpp).
  inline void requeue_yielded(TaskHeader* t) noexcept;
  void requeue_yielded_slow(TaskHeader* t) noexcept;  // pinned, or the ring is full
  /// requeue_yielded for a task that is not pinned (yield's fast path).
  inline void requeue_unpinned(TaskHeader* t) noexcept;
  /// For a fibre about to suspend: this loop's next turn (next_task), or null if it
  /// found nothing or the loop should take its own turn now. The caller switches to it
  /// (runtime_impl.hpp).
  inline TaskHeader* next_for_direct_switch() noexcept;

 private:
  void start_fibre(TaskHeader* t);
  void publish_waited(TaskHeader* t) noexcept;  // after_suspend for a fibre that did not yield
  void push_ring(TaskHeader* t) {
    if (!ring.push(t)) push_ring_full(t);
  }
  void push_ring_full(TaskHeader* t);  // the ring is full: moves half of it out first
  static constexpr unsigned kLifoStreak = 3;
  /// Up to `want` tasks from the spill and global queues (RuntimeImpl::spill says which
  /// first); keeps global_len.
  std::size_t take_global(TaskHeader** buf, std::size_t want);
  unsigned global_takes = 0;
  moodycamel::ConsumerToken gctok_;
  moodycamel::ConsumerToken sctok_;
};

// current_worker(): spindle/internal/runtime_services.hpp (never inlined: a fibre may
// move to another thread across any suspension).
void set_current_worker(Worker* w) noexcept;

// The thread-local slot behind current_worker() (context.cpp), for a function that reads
// it in place, as one %fs-relative load: only before that function's first switch, and
// never again after it. The compiler treats a thread-local's address as constant within a
// function, so a second read after a switch could reuse the old thread's address; every
// read after a switch goes through current_worker(), which is out of line. constinit: no
// dynamic initialisation, so the read needs no TLS wrapper call.
extern __attribute__((tls_model("initial-exec"))) constinit thread_local Worker* tls_worker;

}  // namespace spindle::detail
