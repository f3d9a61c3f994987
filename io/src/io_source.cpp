// FdSource: see io_source.hpp for the design, the invariants and the close sequence.
#include "io_source.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <system_error>
#include <utility>

#include <spindle/detail/parked_waiter.hpp>
#include <spindle/detail/spin.hpp>
#include <spindle/errors.hpp>
#include <spindle/task.hpp>

namespace spindle::detail {

namespace {

[[noreturn]] void throw_closed(const char* what) { throw std::system_error(EBADF, std::generic_category(), what); }

[[noreturn]] void throw_timeout(const char* what) { throw TimeoutError(std::string(what) + ": timed out"); }

// poll(2) events that mean "the syscall may make progress now" for d (an error or a
// hang-up too: the retried syscall reports it).
short poll_events(Dir d) noexcept { return short(d == Dir::read ? (POLLIN | POLLRDHUP) : POLLOUT); }
}  // namespace

bool FdSource::ready_now(Dir d) const noexcept {
  pollfd p{fd_, poll_events(d), 0};
  int r;
  do {
    r = ::poll(&p, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r > 0;
}

void FdSource::register_locked(Worker* w) {
  // Edge-triggered; adding reports the current state as a first edge, so readiness that
  // arrived between the caller's EAGAIN and now is not missed.
  loop_watch(w, fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP, this);
  owner_ = w;
  sink_ = runtime_sink(loop_runtime(w));
}

bool FdSource::should_move(Worker* w) const noexcept {
  // Options::shuffle (a debug option) takes it over at every wait from another loop, so
  // that tests drive hand-overs far more often than balance alone would.
  if (runtime_options(loop_runtime(w)).shuffle) return true;
  // Only towards balance: the loop that holds the fd watches at least two more than the
  // waiting one (both counts are hints from here). Each hand-over then lowers the sum of
  // the squared counts, so moves settle instead of chasing every stolen task back and
  // forth (reactor.cpp, "Handing an fd over", says why a loop takes an fd over).
  return loop_sources(owner_) > loop_sources(w) + 1;
}

void FdSource::move_to(Worker* w, std::unique_lock<SpinLock>& g) {
  // Not under the lock: the old loop's foreign pollers may be dispatching an edge of
  // ours (on_ready takes the lock) while hand_over waits for them. moving_ keeps a
  // second waiter (the other direction, on a third loop) from moving it at once; close()
  // cannot retire the source meanwhile (our caller holds an Op).
  moving_ = true;
  Worker* const old = owner_;
  g.unlock();
  bool moved = loop_hand_over(old, fd_);
  std::exception_ptr failed;
  if (moved) {
    try {
      // Adding reports the current state as a first edge: one that came between the
      // DEL and now is not lost.
      loop_watch(w, fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP, this);
    } catch (...) {
      failed = std::current_exception();
    }
  }
  g.lock();
  moving_ = false;
  if (moved) owner_ = failed ? nullptr : w;  // unregistered: the next wait registers it again
  if (failed) {
    g.unlock();
    std::rethrow_exception(failed);
  }
}

FdSource::Op::Op(FdSource* s, const char* what) : s_(s) {
  // relaxed: the count itself orders nothing; the closer synchronises with our
  // release decrement in ~Op (an RMW chain on ops_).
  if (s->ops_.fetch_add(1, std::memory_order_relaxed) & kClosing) {
    // close() has already decided when to retire: entering now is the data race the
    // public documentation forbids. Leave as ~Op would and report the stream closed.
    leave(s);
    throw_closed(what);
  }
}

FdSource::Op::~Op() { leave(s_); }

void FdSource::drop_ended_owner_locked() noexcept {
  // A copy: resetting sink_ below must not free the mutex we hold.
  const std::shared_ptr<ReportSink> sink = sink_;
  // sink->mu keeps the runtime from being destroyed while we look at it (its destructor
  // clears sink->rt under the lock).
  std::lock_guard lk(sink->mu);
  if (RuntimeImpl* rt = sink->rt) {
    // Once it is closed (the workers joined) no worker polls the owner's reactor any
    // more, so it is ours to touch. Not closed yet: its loop still serves the fd.
    if (!runtime_closed(rt)) return;
    loop_unwatch(owner_, fd_);
  }
  // Otherwise the runtime is gone, and its epoll instance with it: nothing to remove.
  owner_ = nullptr;
  sink_.reset();
}

void FdSource::Op::leave(FdSource* s) noexcept {
  // acq_rel: the release orders everything this operation did to the source before the
  // closer retires it; the acquire pairs with the closer's release of closer_.
  if (s->ops_.fetch_sub(1, std::memory_order_acq_rel) == (kClosing | 1u)) {
    // The last operation out while close() waits: wake it. closer_ is read before the
    // notify, and nothing of the source is touched after it (it may be freed at once).
    Waiter* c = s->closer_;
    c->notify();
  }
}

void FdSource::wait_at(Dir d, int64_t deadline_ns, int64_t now, const char* what, std::source_location where) {
  Worker* w = current_worker();
  if (w == nullptr || current_task_header() == nullptr) {
    wait_foreign(d, deadline_ns, what);
    return;
  }
  // A deadline already passed (a zero or negative timeout, or a call whose time is up)
  // gets no suspension but one look at the fd: readiness the reactor has not reported
  // yet (a connect the kernel completed after connect(2) returned EINPROGRESS, bytes
  // that arrived after a short read) lets the caller retry its syscall, so an operation
  // that can complete without waiting does. Not ready: the wait below times out at once
  // (or raises a pending cancellation first, as every wait does).
  // The caller's clock reading is handed to the wait below, which would read it again.
  if (deadline_ns != 0 && deadline_ns <= now && ready_now(d)) return;
  Waiter me;
  bool& flag = d == Dir::read ? ready_read_ : ready_write_;
  Waiter*& slot = d == Dir::read ? reader_ : writer_;
  std::unique_lock g(mu_);
  if (closed_.load(std::memory_order_relaxed)) {  // relaxed: under the lock
    g.unlock();
    throw_closed(what);
  }
  // Registered with a loop of another runtime (compared by sink: owner_ may dangle once
  // that runtime is destroyed): if it has ended, register again with ours below.
  if (owner_ != nullptr && sink_ != runtime_sink(loop_runtime(w))) drop_ended_owner_locked();
  if (owner_ == nullptr) {
    register_locked(w);
  } else if (owner_ != w && !moving_ && should_move(w)) {
    move_to(w, g);                                  // unlocks while it moves
    if (closed_.load(std::memory_order_relaxed)) {  // relaxed: under the lock
      g.unlock();
      throw_closed(what);
    }
  }
  if (flag) {  // an edge arrived since the caller's syscall failed: retry it
    flag = false;
    return;
  }
  if (slot != nullptr) {
    g.unlock();
    throw RuntimeError(std::string(what) + ": another fibre is already waiting on this " +
                       (d == Dir::read ? "read" : "write") + " side");
  }
  slot = &me;
  g.unlock();

  // on_ready or close() takes `me` and notifies it, with its tag saying which.
  const ParkEnd e = wait_parked_until(
      me,
      [&]() noexcept {
        std::lock_guard g(mu_);
        if (slot == &me) {
          slot = nullptr;
          return true;
        }
        // Taken (the tag was written under this lock): an edge handed to a waiter that
        // gives up is given back for the next one (invariant 1).
        if (me.tag == kTagReady) flag = true;
        return false;
      },
      true, where, deadline_ns, now);
  if (e.outcome == Waiter::Outcome::notified) {
    // tag was written under the lock before the notify; notify/wait order it for us.
    if (me.tag == kTagClosed) throw_closed(what);
    return;
  }
  if (e.outcome == Waiter::Outcome::cancelled) me.raise_cancelled();
  throw_timeout(what);
}

void FdSource::wait_foreign(Dir d, int64_t deadline_ns, const char* what) {
  // A thread outside the runtime blocks in poll(2), in slices so that a close() from
  // elsewhere is noticed.
  // A deadline already passed gets one look (slice 0), as in wait().
  pollfd p{fd_, poll_events(d), 0};
  for (;;) {
    if (closed()) throw_closed(what);
    int slice = 50;
    bool passed = false;
    if (deadline_ns) {
      const int64_t left = deadline_ns - monotonic_ns();
      passed = left <= 0;
      if (passed) {
        slice = 0;
      } else if (left / 1'000'000 < slice) {
        slice = int(left / 1'000'000) + 1;
      }
    }
    const int r = ::poll(&p, 1, slice);
    if (r > 0) return;
    if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), what);
    if (r == 0 && passed) throw_timeout(what);
  }
}

void FdSource::on_ready(uint32_t ev) noexcept {
  Waiter* r = nullptr;
  Waiter* w = nullptr;
  mu_.lock();
  if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    // relaxed: stored before the notify or the latch below, which the reader
    // synchronises with (see read_drained).
    read_closed_.store(true, std::memory_order_relaxed);
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if (reader_) {
      r = std::exchange(reader_, nullptr);
      r->tag = kTagReady;
    } else {
      ready_read_ = true;
    }
  }
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    if (writer_) {
      w = std::exchange(writer_, nullptr);
      w->tag = kTagReady;
    } else {
      ready_write_ = true;
    }
  }
  mu_.unlock();
  if (r) r->notify();
  if (w) w->notify();
}

void FdSource::close() noexcept {
  // 1. Mark closed and wake whoever waits; they fail with EBADF.
  mu_.lock();
  closed_.store(true, std::memory_order_relaxed);  // relaxed: under the lock; readers outside it only take a hint
  Waiter* r = std::exchange(reader_, nullptr);
  Waiter* w = std::exchange(writer_, nullptr);
  if (r) r->tag = kTagClosed;
  if (w) w->tag = kTagClosed;
  mu_.unlock();
  if (r) r->notify();
  if (w) w->notify();

  // 2. Wait for the operations still inside to leave.
  Waiter me;
  closer_ = &me;
  // acq_rel: the release publishes closer_ to the last ~Op; the acquire makes every
  // finished operation's accesses happen before the retirement below.
  if (ops_.fetch_add(kClosing, std::memory_order_acq_rel) != 0) {
    (void)me.wait(false, std::source_location::current());
  }
  // 3. Retire (we may be on another worker than before the wait).
  retire();
}

void FdSource::destroy_here() noexcept {
  if (owner_) {
    loop_unwatch(owner_, fd_);  // waits for another worker's poll still dispatching to us
  }
  ::close(fd_);
  delete this;
}

namespace {
// The body of the pinned task that retires a source on its owner's loop; `done` is
// notified once the fd is closed. If the task is dropped unrun (the runtime stopped
// first), the source is destroyed only when that happens on the owner's thread;
// otherwise it is leaked (a few dozen bytes and the fd, only when shutdown gave up
// waiting for tasks). Either way `done` is notified.
struct Retirer {
  FdSource* s;
  void (*destroy)(FdSource*) noexcept;
  Worker* owner;
  Waiter* done;
  Retirer(FdSource* src, void (*d)(FdSource*) noexcept, Worker* o, Waiter* w) noexcept
      : s(src), destroy(d), owner(o), done(w) {}
  Retirer(Retirer&& o) noexcept
      : s(std::exchange(o.s, nullptr)), destroy(o.destroy), owner(o.owner), done(std::exchange(o.done, nullptr)) {}
  Retirer(const Retirer&) = delete;
  ~Retirer() {
    if (s && current_worker() == owner) destroy(s);
    if (done) done->notify();
  }
  void operator()() {
    destroy(std::exchange(s, nullptr));
    std::exchange(done, nullptr)->notify();
  }
};
}  // namespace

bool FdSource::spawn_retirer(RuntimeImpl* rt, Waiter* done) noexcept {
  auto destroy = [](FdSource* s) noexcept { s->destroy_here(); };
  try {
    const TaskOptions o{.name = "io-retire", .pinned = true, .loop = int(loop_index(owner_))};
    (void)spawn_on(rt, &o, Retirer(this, destroy, owner_, done));
    return true;
  } catch (...) {
    // Closed to spawns from outside, or out of memory. The Retirer may have notified
    // `done` as it was dropped: a spurious wake-up, which every waiter tolerates.
    return false;
  }
}

void FdSource::retire() noexcept {
  if (owner_ == nullptr) {  // never registered: nobody else can hold a pointer to it
    ::close(fd_);
    delete this;
    return;
  }
  Worker* cur = current_worker();
  // Compared by sink first: owner_ dangles once its runtime is destroyed, and a worker of
  // a later runtime may have been allocated at the same address.
  const bool same_runtime = cur && runtime_sink(loop_runtime(cur)) == sink_;
  if (same_runtime && cur == owner_) {
    destroy_here();
    return;
  }
  // close() returns only once the fd is closed (a listener no longer listens, the
  // address can be bound again), so we wait, not cancellably, for the owner to do it.
  Waiter done;
  if (same_runtime) {
    // Another worker of the same runtime: the owner's loop is running (or finishing
    // its late tasks), and spawns from inside are accepted even while closing.
    if (spawn_retirer(loop_runtime(owner_), &done)) {
      (void)done.wait(false, std::source_location::current());
      return;
    }
  } else {
    // A thread outside the owner's runtime. sink->mu keeps the runtime from being
    // destroyed while we look at it (its destructor clears sink->rt under the lock).
    // A copy of the pointer: `delete this` must not free the mutex we hold.
    const std::shared_ptr<ReportSink> sink = sink_;
    std::unique_lock lk(sink->mu);
    RuntimeImpl* rt = sink->rt;
    if (rt == nullptr) {
      // The runtime is gone and its epoll fds with it: the registration no longer exists.
      ::close(fd_);
      delete this;
      return;
    }
    // Closed: no worker polls any more, so the owner's reactor is ours to touch.
    if (runtime_closed(rt)) {
      destroy_here();
      return;
    }
    const bool spawned = spawn_retirer(rt, &done);
    lk.unlock();  // not held while waiting: the runtime's destructor takes it
    if (spawned) {
      (void)done.wait(false, std::source_location::current());
      return;
    }
  }
  // Last resort: deregister and close now, and leak this object, which the owner may
  // still be dispatching to (invariant 2). Only during shutdown or out of memory.
  loop_unwatch_now(owner_, fd_);
  ::close(fd_);
}

}  // namespace spindle::detail
