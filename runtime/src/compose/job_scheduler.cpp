// JobScheduler (aiojobs): a cap on running jobs, a bounded FIFO of pending ones.
//
// JobCtl owns:   the pending FIFO and the active list of JobRecs, the counters, and two
//                lists of parked Waiters: spawners waiting for room in the pending list
//                (FIFO), and wait()/close() callers waiting for the scheduler to empty.
// A job:         a task made but not submitted while it is pending; its JobRec (a
//                DoneNode) is linked into the task's waiter list from the start, so its
//                end is never missed, however it ends. Phases, all under `lock`:
//                  pending -> starting -> active -> done         (it ran)
//                  pending -> dropped -> done                    (cancelled or closed first)
//                `starting`: it holds a slot and is being submitted outside the lock;
//                a cancel meanwhile is remembered and applied once it is submitted.
// Threads:       everything under `lock` (a SpinLock, never held across a suspension or a
//                submit). JobRec::fire runs on the completer's thread.
// Invariants:    n_active == jobs in phase starting/active <= limit (when limit != 0);
//                a job leaves `pending` only at the head (FIFO) unless it is dropped;
//                a pending job exists only while n_active == limit, or while the
//                scheduler is broken (the runtime refused a submit) or closed.
// close(), in order: 1. mark closed (spawn throws from now on) and wake every parked
//                spawner; 2. drop every pending job (it ends cancelled, never runs);
//                3. cancel every active job; 4. wait until none is left.
#include <spindle/job_scheduler.hpp>

#include <spindle/detail/parked_waiter.hpp>
#include <spindle/detail/waiting_core.hpp>
#include <spindle/runtime.hpp>

#include <cstdint>
#include <mutex>
#include <optional>

#include "sched/runtime_impl.hpp"

namespace spindle::detail {

enum class JobPhase : uint8_t { pending, starting, active, dropped, done };

struct JobRec final : DoneNode {
  std::shared_ptr<JobCtl> ctl;
  Task<> task;                                       // a reference of our own to the job's task
  std::optional<TaskOptions> opts;                   // for the submit, which may come later
  JobPhase phase = JobPhase::pending;                // guarded by ctl->lock
  std::optional<std::string> cancel_while_starting;  // guarded by ctl->lock
  JobRec* lprev = nullptr;                           // links in the pending or active list (ctl->lock)
  JobRec* lnext = nullptr;
  std::shared_ptr<JobRec> self;  // the scheduler's ownership until the job is done
  void fire() noexcept override;
};

namespace {
// A list of parked Waiters linked through Waiter::next/prev (these Waiters are on no
// future's list), FIFO. A waiter is in it iff it has a predecessor or is the head: pop
// and remove clear both its links, and take_all clears every prev it hands out (next
// still chains them), so each operation is O(1) but take_all, which is O(n) once.
struct WaiterList {
  Waiter* head = nullptr;
  Waiter* tail = nullptr;
  void push(Waiter* w) noexcept {
    w->next = nullptr;
    w->prev = tail;
    if (tail)
      tail->next = w;
    else
      head = w;
    tail = w;
  }
  bool contains(const Waiter* w) const noexcept { return w->prev != nullptr || head == w; }
  bool remove(Waiter* w) noexcept {  // false if w is not in the list
    if (!contains(w)) return false;
    if (w->prev)
      w->prev->next = w->next;
    else
      head = w->next;
    if (w->next)
      w->next->prev = w->prev;
    else
      tail = w->prev;
    w->next = w->prev = nullptr;
    return true;
  }
  Waiter* pop() noexcept {
    Waiter* w = head;
    if (w) remove(w);
    return w;
  }
  Waiter* take_all() noexcept {  // the chain, still linked through next
    Waiter* w = head;
    for (Waiter* p = w; p; p = p->next) p->prev = nullptr;
    head = tail = nullptr;
    return w;
  }
};
void notify_chain(Waiter* w) noexcept {
  while (w) {
    Waiter* n = w->next;  // read first: w may vanish once notified
    w->notify();
    w = n;
  }
}
}  // namespace

class JobCtl {
 public:
  JobCtl(RuntimeImpl* r, std::size_t lim, std::size_t plim) noexcept : rt(r), limit(lim), pending_limit(plim) {}

  std::shared_ptr<JobRec> enqueue(const std::shared_ptr<JobCtl>& self, TaskHeader* t, const TaskOptions* o,
                                  std::source_location where);
  void on_done(JobRec* r) noexcept;
  bool cancel(JobRec* r, std::string msg);
  void wait(std::source_location where);
  void close(std::source_location where) noexcept;
  std::size_t active() noexcept {
    return read<std::size_t>([&] { return n_active; });
  }
  std::size_t pending() noexcept {
    return read<std::size_t>([&] { return n_pending; });
  }
  bool is_closed() noexcept {
    return read<bool>([&] { return closed; });
  }
  JobPhase phase_of(JobRec* r) noexcept {
    return read<JobPhase>([&] { return r->phase; });
  }

 private:
  template <class V, class F>
  V read(F f) noexcept {
    std::lock_guard g(lock);
    return f();
  }
  bool can_start_locked() const noexcept { return n_pending == 0 && (limit == 0 || n_active < limit); }
  bool has_room_locked() const noexcept {
    return can_start_locked() || pending_limit == 0 || n_pending < pending_limit;
  }
  void push_active_locked(JobRec* r) noexcept;
  void unlink_locked(JobRec*& head, JobRec*& tail, JobRec* r) noexcept;
  void start(std::shared_ptr<JobRec> r) noexcept;
  // Parks the caller in `list` until woken (or cancelled, when cancellable); returns the
  // wait's outcome with the lock held again (`g` holds it before and after). A caller woken
  // by grant_room_locked (its Waiter's tag) gives its grant back (room_granted): it now
  // looks at the room itself.
  Waiter::Outcome park(std::unique_lock<SpinLock>& g, WaiterList& list, bool cancellable, std::source_location where);
  // The free places in the pending list that no spawn woken for one is on its way to
  // take: while there is one and a spawn waits for room, the first in line is taken out
  // (FIFO) and returned, to be notified once the lock is released. Called after whatever
  // frees a place (a job ending or leaving the pending list, a spawn taking its place or
  // giving up its grant), so that no spawn waits while there is room for it, and at most
  // as many are woken as there are places, one after the other in their order.
  Waiter* grant_room_locked() noexcept;

  RuntimeImpl* const rt;
  const std::size_t limit, pending_limit;
  SpinLock lock;
  JobRec* pend_head = nullptr;  // FIFO: pop at the head, push at the tail
  JobRec* pend_tail = nullptr;
  JobRec* act_head = nullptr;
  JobRec* act_tail = nullptr;
  std::size_t n_pending = 0, n_active = 0;
  bool closed = false;
  bool broken = false;  // the runtime refused a submit: pending jobs are dropped
  WaiterList room_waiters;
  WaiterList idle_waiters;
  std::size_t room_granted = 0;  // spawns woken for a place, not yet back under the lock
};

Waiter* JobCtl::grant_room_locked() noexcept {
  if (!room_waiters.head || closed || !has_room_locked()) return nullptr;
  // The free places: the pending list's (when a spawn may start at once, the list is
  // empty). With pending_limit 0 there is room for every spawn, and none waits.
  const std::size_t places = pending_limit == 0 ? SIZE_MAX : pending_limit - n_pending;
  if (room_granted >= places) return nullptr;
  Waiter* w = room_waiters.pop();
  w->next = nullptr;
  w->tag = 1;  // woken for a place (read back by park, under the lock)
  ++room_granted;
  return w;
}

void JobRec::fire() noexcept { ctl->on_done(this); }

void JobCtl::unlink_locked(JobRec*& head, JobRec*& tail, JobRec* r) noexcept {
  if (r->lprev)
    r->lprev->lnext = r->lnext;
  else
    head = r->lnext;
  if (r->lnext)
    r->lnext->lprev = r->lprev;
  else
    tail = r->lprev;
  r->lprev = r->lnext = nullptr;
}

void JobCtl::push_active_locked(JobRec* r) noexcept {
  r->lnext = nullptr;
  r->lprev = act_tail;
  if (act_tail)
    act_tail->lnext = r;
  else
    act_head = r;
  act_tail = r;
  ++n_active;
  r->phase = JobPhase::starting;
}

Waiter::Outcome JobCtl::park(std::unique_lock<SpinLock>& g, WaiterList& list, bool cancellable,
                             std::source_location where) {
  Waiter w;
  w.tag = 0;
  list.push(&w);
  g.unlock();
  const ParkEnd e = wait_parked(
      w,
      [&]() noexcept {
        std::lock_guard g(lock);
        return list.remove(&w);
      },
      cancellable, where);
  g.lock();
  // The tag is written under the lock before the notify; read under it again.
  if (w.tag) --room_granted;
  return e.outcome;  // no deadline: notified or cancelled (a notifier may have chosen us then)
}

std::shared_ptr<JobRec> JobCtl::enqueue(const std::shared_ptr<JobCtl>& self, TaskHeader* t, const TaskOptions* o,
                                        std::source_location where) {
  std::shared_ptr<JobRec> rec;
  try {
    rec = std::make_shared<JobRec>();
    rec->ctl = self;
    t->ref();
    rec->task = Task<>(t);
    if (o) rec->opts = *o;
  } catch (...) {
    t->unref();  // the reference meant for the scheduler
    throw;
  }
  std::unique_lock g(lock);
  for (;;) {
    if (closed) {
      g.unlock();
      t->unref();
      throw RuntimeError("JobScheduler::spawn: the scheduler is closed");
    }
    if (has_room_locked()) break;
    if (park(g, room_waiters, true, where) == Waiter::Outcome::cancelled) {
      // If we were woken for a place, it goes to the next in line.
      Waiter* next = grant_room_locked();
      g.unlock();
      if (next) next->notify();
      t->unref();
      raise_own_cancel();
    }
  }
  (void)link_done_node(t, rec.get());  // not submitted yet, so it cannot be done
  rec->self = rec;
  // A place may be left after ours (the job starts at once, or the pending list had
  // more than one free): the next in line may take it.
  if (can_start_locked()) {
    push_active_locked(rec.get());
    Waiter* next = grant_room_locked();
    g.unlock();
    if (next) next->notify();
    start(rec);
  } else {
    rec->phase = JobPhase::pending;
    rec->lnext = nullptr;
    rec->lprev = pend_tail;
    if (pend_tail)
      pend_tail->lnext = rec.get();
    else
      pend_head = rec.get();
    pend_tail = rec.get();
    ++n_pending;
    Waiter* next = grant_room_locked();
    g.unlock();
    if (next) next->notify();
  }
  return rec;
}

void JobCtl::start(std::shared_ptr<JobRec> r) noexcept {
  TaskHeader* t = static_cast<TaskHeader*>(r->task.core_ptr());
  bool submitted = false;
  t->ref();  // ours, so that t outlives a failed submit (which drops the scheduler's)
  try {
    submit(rt, t, r->opts ? &*r->opts : nullptr);
    submitted = true;
  } catch (...) {
  }
  if (!submitted) {
    // The runtime is shut down: this job cannot run, and neither can those pending.
    {
      std::lock_guard g(lock);
      broken = true;
    }
    finish_unstarted(t, Status::cancelled, nullptr);  // drops our reference; fires on_done
    return;
  }
  t->unref();
  std::optional<std::string> msg;
  {
    std::lock_guard g(lock);
    if (r->phase == JobPhase::starting) {
      r->phase = JobPhase::active;
      msg = std::move(r->cancel_while_starting);
    }
  }
  if (msg) {
    try {
      cancel_task(t, std::move(*msg));
    } catch (...) {  // no memory for the message: cancel without it
      cancel_task(t, {});
    }
  }
}

void JobCtl::on_done(JobRec* r) noexcept {
  std::shared_ptr<JobRec> to_start;
  JobRec* drop = nullptr;  // chain (through lnext) of pending jobs to end, when broken
  Waiter* room = nullptr;
  Waiter* idle = nullptr;
  lock.lock();
  if (r->phase == JobPhase::starting || r->phase == JobPhase::active) {
    unlink_locked(act_head, act_tail, r);
    --n_active;
  }
  r->phase = JobPhase::done;
  std::shared_ptr<JobRec> keep = std::move(r->self);  // released last, after the unlock
  if (broken || closed) {
    drop = std::exchange(pend_head, nullptr);
    pend_tail = nullptr;
    n_pending = 0;
    for (JobRec* p = drop; p; p = p->lnext) p->phase = JobPhase::dropped;
    if (drop) room = room_waiters.take_all();
  } else if (pend_head && (limit == 0 || n_active < limit)) {
    JobRec* next = pend_head;
    unlink_locked(pend_head, pend_tail, next);
    --n_pending;
    to_start = next->self;
    push_active_locked(next);
  }
  if (!broken && !closed) room = grant_room_locked();  // a place freed (pending or active)
  if (n_active == 0 && n_pending == 0) idle = idle_waiters.take_all();
  lock.unlock();
  notify_chain(room);
  notify_chain(idle);
  if (to_start) start(std::move(to_start));
  while (drop) {
    JobRec* p = drop;
    drop = p->lnext;  // read first: p may be freed by its own on_done
    finish_unstarted(static_cast<TaskHeader*>(p->task.core_ptr()), Status::cancelled, nullptr);
  }
  keep.reset();  // may free r, and this JobCtl with it: nothing of either is used after
}

bool JobCtl::cancel(JobRec* r, std::string msg) {
  std::unique_lock g(lock);
  switch (r->phase) {
    case JobPhase::pending: {
      unlink_locked(pend_head, pend_tail, r);
      --n_pending;
      r->phase = JobPhase::dropped;
      Waiter* room = grant_room_locked();
      g.unlock();
      notify_chain(room);
      auto* t = static_cast<TaskHeader*>(r->task.core_ptr());
      if (!msg.empty()) {
        std::lock_guard tg(*t);
        try {
          t->extra_locked().cancel_message = std::move(msg);
        } catch (...) {  // no memory for the message: cancel without it
        }
      }
      std::shared_ptr<JobRec> keep = r->self;           // on_done releases the scheduler's
      finish_unstarted(t, Status::cancelled, nullptr);  // fires on_done
      return true;
    }
    case JobPhase::starting:
      r->cancel_while_starting = std::move(msg);
      return true;
    case JobPhase::active:
      g.unlock();
      return cancel_task(r->task.core_ptr(), std::move(msg));
    case JobPhase::dropped:
    case JobPhase::done:
      break;
  }
  return false;
}

void JobCtl::wait(std::source_location where) {
  std::unique_lock g(lock);
  while (n_active + n_pending > 0) {
    if (park(g, idle_waiters, true, where) == Waiter::Outcome::cancelled) {
      g.unlock();
      raise_own_cancel();
    }
  }
}

void JobCtl::close(std::source_location where) noexcept {
  lock.lock();
  closed = true;
  Waiter* room = room_waiters.take_all();
  JobRec* drop = std::exchange(pend_head, nullptr);
  pend_tail = nullptr;
  n_pending = 0;
  for (JobRec* p = drop; p; p = p->lnext) p->phase = JobPhase::dropped;
  for (JobRec* a = act_head; a; a = a->lnext) {
    if (a->phase == JobPhase::starting) {
      if (!a->cancel_while_starting) a->cancel_while_starting.emplace();
    } else {
      cancel_task(a->task.core_ptr(), {});  // no message: allocates nothing, cannot throw
    }
  }
  lock.unlock();
  notify_chain(room);  // they see `closed` and throw
  while (drop) {
    JobRec* p = drop;
    drop = p->lnext;
    finish_unstarted(static_cast<TaskHeader*>(p->task.core_ptr()), Status::cancelled, nullptr);
  }
  std::unique_lock g(lock);
  while (n_active + n_pending > 0) (void)park(g, idle_waiters, false, where);
}

// ---- the functions job_scheduler.hpp calls -------------------------------------------------

std::shared_ptr<JobCtl> jobs_create(RuntimeImpl* rt, std::size_t limit, std::size_t pending_limit) {
  if (!rt) rt = current_runtime();
  if (!rt) throw RuntimeError("JobScheduler: no running runtime on this thread (pass a Runtime)");
  return std::make_shared<JobCtl>(rt, limit, pending_limit);
}
std::shared_ptr<JobRec> jobs_enqueue(const std::shared_ptr<JobCtl>& ctl, TaskHeader* t, const TaskOptions* o,
                                     std::source_location where) {
  return ctl->enqueue(ctl, t, o, where);
}
void jobs_wait(JobCtl* ctl, std::source_location where) { ctl->wait(where); }
void jobs_close(JobCtl* ctl, std::source_location where) noexcept { ctl->close(where); }
std::size_t jobs_active(JobCtl* ctl) noexcept { return ctl->active(); }
std::size_t jobs_pending(JobCtl* ctl) noexcept { return ctl->pending(); }
bool jobs_closed(JobCtl* ctl) noexcept { return ctl->is_closed(); }

bool job_cancel(JobRec* r, std::string msg) {
  if (!r) throw InvalidStateError("Job: empty handle");
  return r->ctl->cancel(r, std::move(msg));
}
void job_wait(JobRec* r, std::source_location where) {
  if (!r) throw InvalidStateError("Job: empty handle");
  FutureCore* c = r->task.core_ptr();
  if (wait_one(c, 0, true, where) != Waiter::Outcome::cancelled || c->done()) return;
  // aiojobs: a cancelled Job.wait() closes the job, then lets the cancellation through.
  r->ctl->cancel(r, own_cancel_message());
  join_uncancellable(c, where);
  raise_own_cancel();
}
bool job_is_pending(JobRec* r) noexcept { return r && r->ctl->phase_of(r) == JobPhase::pending; }
bool job_is_active(JobRec* r) noexcept {
  if (!r) return false;
  const JobPhase p = r->ctl->phase_of(r);
  return p == JobPhase::starting || p == JobPhase::active;
}

}  // namespace spindle::detail

namespace spindle {

JobScheduler::JobScheduler(std::size_t limit, std::size_t pending_limit)
    : limit_(limit), pending_limit_(pending_limit), ctl_(detail::jobs_create(nullptr, limit, pending_limit)) {}
JobScheduler::JobScheduler(Runtime& rt, std::size_t limit, std::size_t pending_limit)
    : limit_(limit), pending_limit_(pending_limit), ctl_(detail::jobs_create(rt.impl(), limit, pending_limit)) {}
JobScheduler::~JobScheduler() { close(); }

}  // namespace spindle
