// A task's scheduling state (FutureCore::sched) and every transition of it. No other
// file writes that word: each change is a named function here, and one whose outcome
// the caller must act on returns a [[nodiscard]] enum class. The functions are inline
// because they sit on the hot paths (spawn, run, suspend, wake): each is one atomic
// instruction or one CAS loop, and the caller's branch on the outcome folds into it, so
// a call costs nothing over the atomic operation written out in place.
//
// States (bits of `sched`: Q kQueued, R kRunning, N kNotified, E kEnded, S kStarted,
// F kFnDropped; S, once set, is never cleared):
//
//   NEW              0      made, not handed to a runtime yet (a TaskGroup or JobScheduler
//                           may hold a task there before it submits or cancels it)
//   QUEUED           Q      in a run queue, never run: no fibre, no stack
//   RUNNING          R|S    a worker runs its fibre, or it yielded and waits in a run
//                           queue for its next step (a yield writes nothing: see below)
//   HELD             R|S    a dump reads the saved stack of a suspended fibre: the same
//                           bits as RUNNING, so everyone else treats it as running
//   IDLE             S      suspended, its context saved; nobody owns it
//   READY            Q|S    suspended, in a run queue or being pushed to one
//   ENDED            E|S    its fibre finished, or shutdown abandoned it; final
//   ENDED_UNSTARTED  E|F    ended before it ever ran, its callable destroyed; final
//   +N                      a mark on RUNNING, HELD or READY: woken meanwhile
//
//   NEW ---submit---> QUEUED ---start---> RUNNING[+N] ------end------> ENDED
//    |                  |                   |    |   ^                    ^
//    | end_unstarted    | end_unstarted     |    |   | run (keeps N)      | abandon
//    v                  v                   |    |   |                    | (shutdown)
//   ENDED_UNSTARTED <---+                   |    |  READY[+N] ------------+
//                                           |    |   ^    ^   ^           |
//                         publish_suspended |    +---+    |   |           |
//                         (N)               |             |   |           |
//                                           |        wake |   | release   |
//                         publish_suspended |             |   | (N)       |
//                         (otherwise)       v             |   |           |
//                                          IDLE ----------+   |           |
//                                           |  ^              |           |
//                                      hold |  | release      |           |
//                                           v  | (no N)       |           |
//                                          HELD[+N] ----------+           |
//                                    IDLE, HELD ----------abandon---------+
//
//   wake on RUNNING, HELD or READY adds N (the state stays); on NEW, QUEUED, ENDED or
//   ENDED_UNSTARTED it does nothing.
//
// A yield: the fibre switches out and its worker queues it, and its state stays
// RUNNING[+N] all the while; run, when a worker takes it again, leaves it so. To everyone
// else it is simply still running, which is what they would do right for it too: a waker
// only marks N (the task is queued already, and the mark is read by its next publish), a
// dump cannot hold it, shutdown abandons only once the loops have stopped (a loop stops
// only with its own queue empty, and a yielder is queued only on its own loop). So a yield
// costs no atomic RMW at all: the run queue's release/acquire pair hands the saved context
// to a thief, as it hands any queued task.
//
// Who may make each transition. The owner of a task is whoever holds it where nobody
// else can: the thread that made it until it submits it, the worker that took it from a
// run queue (there is only one queue pointer to a task: only the wake that made it
// IDLE -> READY pushes), the worker that runs it, the dump that holds it.
//
//   submit             NEW -> QUEUED                          the spawning thread (owner)
//   start              QUEUED -> RUNNING                      owner worker
//   run                READY[+N] -> RUNNING[+N]; a yielder's  owner worker
//   (run_if_started)   RUNNING[+N] stays
//   publish_suspended  RUNNING[+N] -> IDLE, or READY          owner worker, after the switch
//                      (never for a yield)
//   end                RUNNING[+N] -> ENDED                   owner worker, after the switch
//   end_unstarted      NEW or QUEUED -> ENDED_UNSTARTED       owner (worker, JobScheduler,
//                                                             shutdown's drain)
//   wake               IDLE -> READY; RUNNING, HELD, READY    any thread
//                      -> the same +N
//   hold               IDLE -> HELD                           a dump, on any thread
//   release            HELD[+N] -> IDLE, or READY             the dump that held it
//   abandon            IDLE, READY, HELD[+N] -> ENDED         shutdown, workers joined
//
// Invariants: a task is in at most one run queue (only wake's IDLE -> READY, publish's
// RUNNING -> READY, release's HELD -> READY and a yield queue a started task, and each is
// made by the single owner or by the one CAS that left IDLE); a fibre is never resumed before its
// context is saved (it becomes IDLE or READY only after the switch away from it); the
// ENDED states are final (nothing writes an ended task's state again).
#pragma once

#include <atomic>
#include <cstdint>

#include <spindle/detail/task_header.hpp>

namespace spindle::detail::task_state {

/// submit: NEW -> QUEUED, by the spawning thread just before the first push.
inline void submit(TaskHeader* t) noexcept {
  // A store: nobody else writes a NEW task's state. relaxed: the queue push that follows
  // publishes the task to the worker that runs it. A handle holder may call cancel()
  // concurrently: its wake sees NEW or QUEUED, and does nothing either way.
  t->sched.store(kQueued, std::memory_order_relaxed);
}

/// start: QUEUED -> RUNNING, by the worker that took the task from a queue and has made
/// its fibre; the switch into it follows.
inline void start(TaskHeader* t) noexcept {
  // A store: nobody else writes a QUEUED task's state (wakes and dumps leave unstarted
  // tasks alone), and we own it. relaxed: wakers only need to see RUNNING, which they
  // act on with their own CAS; the context hand-over is ordered by the queues.
  t->sched.store(kRunning | kStarted, std::memory_order_relaxed);
}

/// run: READY[+N] -> RUNNING[+N], by the worker that took a started task from a queue,
/// just before it switches into the fibre (from its loop or in a direct switch). A task
/// that yielded is RUNNING[+N] already and is left so.
inline void run(TaskHeader* t) noexcept {
  // relaxed: R is ours to read. While a task is queued only wakes write its state, and
  // they add N only; the push that queued it (a yield's) or the wake's CAS that made it
  // READY came before our dequeue, which ordered it before this load.
  if (t->sched.load(std::memory_order_relaxed) & kRunning) return;
  // An RMW, not a store: a waker may CAS N onto a READY task. The XOR keeps that mark, so
  // either the worker's publish after this step reads it, or the waker sees RUNNING and
  // marks that; a store here would erase a wake-up that landed between the dequeue and
  // the store, and the fibre, having checked its condition before it suspended, would
  // sleep for ever. acq_rel: pairs with that waker's CAS, so the fibre sees its signal.
  t->sched.fetch_xor(kQueued | kRunning, std::memory_order_acq_rel);
}

/// run, for a worker about to switch straight into t (a task it took from a queue) from
/// another fibre: false, and nothing written, if t has no fibre yet (QUEUED: the loop
/// must start it); else run(t). One load for both questions.
[[nodiscard]] inline bool run_if_started(TaskHeader* t) noexcept {
  // relaxed: as in run and started (S and R are ours to read once we hold the task).
  const uint16_t cur = t->sched.load(std::memory_order_relaxed);
  if (!(cur & kStarted)) return false;
  if (!(cur & kRunning)) t->sched.fetch_xor(kQueued | kRunning, std::memory_order_acq_rel);  // as in run
  return true;
}

enum class Suspended : uint8_t {
  idle,     // nobody owns it now; a wake will queue it
  requeue,  // READY: the caller must push it to a run queue
};

/// publish_suspended: RUNNING[+N] -> IDLE, or -> READY if it was woken meanwhile (N).
/// By the worker that ran the step, once the fibre's context is saved in its frame (the
/// suspend, then publish order: nobody may resume it before this). Not for a yield.
[[nodiscard]] inline Suspended publish_suspended(TaskHeader* t) noexcept {
  uint16_t cur = t->sched.load(std::memory_order_relaxed);
  uint16_t next;
  do {
    next = (cur & kNotified) ? uint16_t(kStarted | kQueued) : uint16_t(kStarted);
    // acq_rel: the release publishes frame->ctx to whoever schedules it next (a waker
    // that acquires IDLE); the acquire pairs with a waker's N.
  } while (!t->sched.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_relaxed));
  return (next & kQueued) ? Suspended::requeue : Suspended::idle;
}

/// end: RUNNING[+N] -> ENDED, by the worker that ran the fibre's last step, after the
/// switch back from it. A late wake-up (N) no longer matters.
inline void end(TaskHeader* t) noexcept {
  // A store: a waker's CAS that lands first is simply overwritten; one that comes later
  // sees ENDED and does nothing. No dump holds a running task, and shutdown abandons only
  // once the workers are joined. release: whoever reads ENDED with acquire (the drain of
  // shutdown, the task's destructor) sees the fibre's last writes.
  t->sched.store(kEnded | kStarted, std::memory_order_release);
}

/// end_unstarted: NEW or QUEUED -> ENDED_UNSTARTED, by the task's owner once the task
/// has been completed without running and its callable destroyed (finish_unstarted).
inline void end_unstarted(TaskHeader* t) noexcept {
  // A store: wakes and dumps never write an unstarted task's state, and abandon only
  // sees started ones. release: as for end; the destructor, which reads F with acquire,
  // sees the callable gone and does not destroy it again.
  t->sched.store(kEnded | kFnDropped, std::memory_order_release);
}

enum class Wake : uint8_t {
  must_schedule,     // it was IDLE and is READY now: the caller must push it
  already_queued,    // READY: marked N; it is on its way (the mark survives run)
  notified_running,  // RUNNING or HELD: marked N; its owner requeues it at publish
  not_started,       // NEW or QUEUED: it will run (or end unstarted) without our help
  ended,             // ENDED or ENDED_UNSTARTED: nothing will look at the signal again
};

/// wake: IDLE -> READY, or RUNNING/HELD/READY -> the same +N. Any thread, after it set
/// the signal the task will check when it runs.
[[nodiscard]] inline Wake wake(TaskHeader* t) noexcept {
  uint16_t cur = t->sched.load(std::memory_order_relaxed);
  for (;;) {
    if (cur & kEnded) return Wake::ended;
    // Not started: either QUEUED, or NEW (a TaskGroup or JobScheduler may cancel it
    // then): submitting it queues it.
    if (!(cur & kStarted)) return Wake::not_started;
    // RUNNING, HELD or READY: mark N. For READY this matters: the worker that dequeues it
    // turns it RUNNING with an RMW that keeps N (run), so either that RMW reads our mark
    // (and with it our signal) or we see RUNNING and mark that; a plain load here could
    // miss the fibre re-checking its signal (a lost wake-up). An N already there is
    // written again, with the same CAS, for the same reason: the load above may show a
    // mark the task has consumed since (publish_suspended cleared it, the task ran,
    // checked its signal before our store reached it, and is suspending now). Returning
    // on that stale mark lost wake-ups (the mpsc benchmark hung about one run in five);
    // the CAS reads the latest state or fails and retries.
    const uint16_t next = (cur & (kRunning | kQueued)) ? uint16_t(cur | kNotified) : uint16_t(cur | kQueued);
    // acq_rel: acquire pairs with the release of publish_suspended (the fibre's context
    // is saved) when we take it from IDLE; release hands our view (the signal) to whoever
    // runs it: run's and publish_suspended's acquire.
    if (t->sched.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      if (!(cur & (kRunning | kQueued))) return Wake::must_schedule;
      return (cur & kRunning) ? Wake::notified_running : Wake::already_queued;
    }
  }
}

enum class Hold : uint8_t {
  held,  // HELD: the caller may read the saved fibre, then must call release
  busy,  // not IDLE (running, queued, not started or ended): leave it alone
};

/// hold: IDLE -> HELD, by a dump on any thread, to read a suspended fibre's stack. It is
/// taken exactly as a worker takes a task to run it, so it cannot be resumed underneath:
/// wakers see RUNNING and only mark it N.
[[nodiscard]] inline Hold hold(TaskHeader* t) noexcept {
  uint16_t cur = kStarted;
  // strong: a spurious failure would skip a task that is in fact IDLE. acq_rel: the
  // acquire pairs with the release of publish_suspended (its context and stack are
  // complete).
  return t->sched.compare_exchange_strong(cur, uint16_t(kStarted | kRunning), std::memory_order_acq_rel,
                                          std::memory_order_relaxed)
             ? Hold::held
             : Hold::busy;
}

enum class Release : uint8_t {
  idle,           // IDLE again
  must_schedule,  // woken while held: READY, the caller must push it
  ended,          // shutdown abandoned it while held: ENDED stays; nothing to do
};

/// release: HELD[+N] -> IDLE, or READY if woken meanwhile, as publish_suspended does.
/// By the dump that held it. A task that shutdown abandoned meanwhile stays ENDED.
[[nodiscard]] inline Release release(TaskHeader* t) noexcept {
  uint16_t cur = t->sched.load(std::memory_order_relaxed);
  uint16_t next;
  do {
    if (cur & kEnded) return Release::ended;
    next = (cur & kNotified) ? uint16_t(kStarted | kQueued) : uint16_t(kStarted);
    // acq_rel: the acquire sees a waker's N (and its signal); the release hands the
    // fibre on unchanged to whoever schedules it next.
  } while (!t->sched.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_relaxed));
  return (next & kQueued) ? Release::must_schedule : Release::idle;
}

enum class Abandoned : uint8_t {
  was_queued,  // it was READY: a queue holds it, or a waker is between its CAS and its push
  settled,     // it was IDLE (or HELD): no queue will see it
};

/// abandon: IDLE, READY or HELD[+N] -> ENDED, by shutdown once the workers are joined,
/// for a started task that would not end. Wakes from then on do nothing (they never read
/// its frame or the runtime again).
[[nodiscard]] inline Abandoned abandon(TaskHeader* t) noexcept {
  // acq_rel: the acquire comes after a waker's CAS that made it READY (the caller then
  // waits for that waker's push); the release orders our ENDED before anything a later
  // waker or a dump's release could do with the task.
  return (t->sched.exchange(kEnded | kStarted, std::memory_order_acq_rel) & kQueued) ? Abandoned::was_queued
                                                                                     : Abandoned::settled;
}

/// Whether the task has a fibre (or had one): everything but NEW, QUEUED and
/// ENDED_UNSTARTED. For the worker that holds the task (it took it from a queue, or is
/// moving it between queues).
inline bool started(const TaskHeader* t) noexcept {
  // relaxed: S was set by the start that came before this queueing, which the queue
  // hand-off ordered before us; nobody clears it.
  return t->sched.load(std::memory_order_relaxed) & kStarted;
}

}  // namespace spindle::detail::task_state
