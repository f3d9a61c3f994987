// The engines of wait_for, timeout, shield, wait, gather and as_completed (waiting.hpp),
// on top of FutureCore's waiter lists. See detail/waiting_core.hpp for the design: one
// DoneNode per watched future, fired by the completer, recording completions under the
// Watch's SpinLock; the consumer parks one Waiter at a time.
#include <spindle/detail/waiting_core.hpp>

#include <spindle/detail/parked_waiter.hpp>
#include <spindle/task.hpp>
#include <spindle/waiting.hpp>

#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>

#include "sched/runtime_impl.hpp"

namespace spindle::detail {

namespace {
void mark_retrieved(FutureCore* c) noexcept {
  // relaxed: the bit only silences the "never retrieved" report made when the object is
  // destroyed; destruction follows the last unref (acq_rel), which orders this store.
  c->word.fetch_or(uint16_t(kRetrieved), std::memory_order_relaxed);
}

// Marks a future retrieved when it completes, then frees itself.
struct SilenceNode final : DoneNode {
  FutureCore* core = nullptr;
  void fire() noexcept override {
    // The completer holds a reference to `core` while it notifies its waiters.
    mark_retrieved(core);
    delete this;
  }
  // The future went while pending (its last handle dropped): nothing to silence.
  void orphaned() noexcept override { delete this; }
};
}  // namespace

// ---- small pieces -------------------------------------------------------------------------

bool link_done_node(FutureCore* c, Waiter* node) noexcept {
  std::lock_guard g(*c);
  if (c->done()) return false;
  c->link_waiter(node);
  return true;
}

bool unlink_done_node(FutureCore* c, Waiter* node) noexcept {
  std::lock_guard g(*c);
  for (Waiter** p = &c->waiters(); *p; p = &(*p)->next) {
    if (*p == node) {
      *p = node->next;
      node->next = nullptr;
      return true;
    }
  }
  return false;
}

bool OwnedDoneNode::reclaim(FutureCore* c) noexcept {
  if (unlink_done_node(c, this)) return true;
  // acquire: pairs with the release in landed(), the completer's last touch of the node.
  Backoff b;
  while (!landed_.load(std::memory_order_acquire)) b.pause();
  return false;
}

Waiter::Outcome wait_one(FutureCore* c, int64_t deadline_ns, bool cancellable, std::source_location where) {
  if (c->done()) return Waiter::Outcome::notified;
  Waiter w;
  if (!link_done_node(c, &w)) return Waiter::Outcome::notified;
  // c's completer detaches w and notifies it.
  const ParkEnd e = wait_parked_until(
      w, [&]() noexcept { return unlink_done_node(c, &w); }, cancellable, where, deadline_ns);
  // Completed as the deadline passed: done, so not timed out.
  return e.taken && e.outcome == Waiter::Outcome::timed_out ? Waiter::Outcome::notified : e.outcome;
}

void join_uncancellable(FutureCore* c, std::source_location where) noexcept {
  if (c->done()) return;
  Waiter w;
  if (!link_done_node(c, &w)) return;
  // Not cancellable: returns only once notified, and the completer never touches w after
  // notifying it.
  while (w.wait(false, where) != Waiter::Outcome::notified) {
  }
}

bool cancel_core(FutureCore* c, std::string msg) {
  return c->is_task() ? cancel_task(c, std::move(msg)) : c->cancel_future(msg);
}

void cancel_and_join(FutureCore* c, std::source_location where) noexcept {
  if (c->done()) return;
  try {
    cancel_core(c, {});
  } catch (...) {  // only an allocation can fail, and an empty message needs none
  }
  join_uncancellable(c, where);
}

void silence_when_done(FutureCore* c) {
  if (c->done()) {
    mark_retrieved(c);
    return;
  }
  auto* n = new SilenceNode();
  n->core = c;
  if (!link_done_node(c, n)) {
    mark_retrieved(c);
    delete n;
  }
}

std::string own_cancel_message() {
  TaskHeader* t = current_task_header();
  if (!t) return {};
  std::lock_guard g(*t);
  if (Extra* x = t->extra()) return x->cancel_message;
  return {};
}

void raise_own_cancel() {
  TaskHeader* t = current_task_header();
  if (!t) throw CancelledError();
  throw take_cancel(t);
}

std::exception_ptr outcome_error(FutureCore* c) {
  switch (c->status()) {
    case Status::pending:
      throw InvalidStateError("spindle: outcome of a pending future");
    case Status::result:
      return nullptr;
    case Status::cancelled:
      return std::make_exception_ptr(CancelledError(c->cancel_message()));
    case Status::exception:
      mark_retrieved(c);
      return c->extra()->error;  // immutable once done; the status load above acquired it
  }
  return nullptr;
}

// ---- wait_for / shield -------------------------------------------------------------------

void wait_for_core(FutureCore* c, int64_t deadline_ns, std::source_location where) {
  const Waiter::Outcome o = wait_one(c, deadline_ns, true, where);
  if (o == Waiter::Outcome::notified) return;
  if (o == Waiter::Outcome::cancelled) {
    if (!c->done()) {
      cancel_core(c, own_cancel_message());
      join_uncancellable(c, where);
    }
    // Unless it ended cancelled, its outcome is the caller's: it completed as we were
    // cancelled, or it turned the cancellation we passed on into a value or an error (a
    // get() served before the cancel landed returns its item, a handler returns).
    // Dropping that value would lose what it received; so hand it out, and leave our
    // cancellation pending for the next suspension point (as a served get() does).
    if (c->status() != Status::cancelled) return;
    raise_own_cancel();
  }
  // The deadline passed: cancel it and wait for it to end (asyncio waits too).
  cancel_core(c, {});
  join_uncancellable(c, where);
  if (c->status() != Status::cancelled) return;  // it finished meanwhile: not lost
  // Our own cancellation, if one arrived meanwhile, wins over the timeout (asyncio's
  // Timeout.__aexit__ lets an outside CancelledError through).
  TaskHeader* self = current_task_header();
  if (self && cancel_pending(self)) throw take_cancel(self);
  throw TimeoutError();
}

void shield_core(FutureCore* c, std::source_location where) {
  const Waiter::Outcome o = wait_one(c, 0, true, where);
  if (o == Waiter::Outcome::cancelled && !c->done()) {
    // The caller gives up on c, so nobody it knows of looks at c's outcome: as asyncio's
    // shield does, mark it retrieved once it ends, so a later failure is not reported as
    // never retrieved. (Whoever holds c's handle can still get() it.)
    try {
      silence_when_done(c);
    } catch (const std::bad_alloc&) {
      // No memory for the node: the worst that follows is one spurious report.
    }
    raise_own_cancel();
  }
}

// ---- Watch -------------------------------------------------------------------------------

struct Watch::Node final : OwnedDoneNode {
  Watch* owner = nullptr;
  std::size_t index = 0;
  bool linked = false;  // the owner's own bookkeeping
  void on_complete(Status s) noexcept override { owner->on_done(index, s); }
  void fire() noexcept override {
    owner->wake_if_ready();
    landed();  // the owner may free this node (and itself) from here on
  }
};

namespace {
// A recorded future is published a few instructions after its recording (both under its
// own lock); wait for that before handing it out, so that it reads as done.
void await_published(FutureCore* c) noexcept {
  Backoff b;
  while (!c->done()) b.pause();
}
}  // namespace

Watch::Watch(FutureCore* const* futs, std::size_t n, WatchMode mode) : n_(n), mode_(mode) {
  if (n > UINT32_MAX) throw std::length_error("spindle: too many futures to wait on");
  std::unique_ptr<FutureCore*[]> f(new FutureCore*[n]);
  std::unique_ptr<uint32_t[]> order(new uint32_t[n]);
  std::unique_ptr<Node[]> nodes(new Node[n]);
  for (std::size_t i = 0; i < n; ++i) f[i] = futs[i];
  futs_ = f.release();
  order_ = order.release();
  nodes_ = nodes.release();
  for (std::size_t i = 0; i < n; ++i) {
    Node& node = nodes_[i];
    node.owner = this;
    node.index = i;
    node.linked = link_done_node(futs_[i], &node);
    if (!node.linked) {
      std::lock_guard g(lock_);
      record_locked(i, futs_[i]->status());
    }
  }
}

Watch::~Watch() {
  for (std::size_t i = 0; i < n_; ++i) {
    Node& node = nodes_[i];
    if (node.linked) (void)node.reclaim(futs_[i]);
  }
  delete[] nodes_;
  delete[] order_;
  delete[] futs_;
}

void Watch::record_locked(std::size_t i, Status s) noexcept {
  order_[count_++] = static_cast<uint32_t>(i);
  switch (s) {
    case Status::exception:
      exception_ = true;
      [[fallthrough]];
    case Status::cancelled:
      if (!failure_) first_failure_ = i;
      failure_ = true;
      break;
    default:
      break;
  }
}

bool Watch::ready_locked() const noexcept {
  switch (mode_) {
    case WatchMode::any:
      return count_ > consumed_;
    case WatchMode::failure_or_all:
      return failure_ || count_ == n_;
    case WatchMode::exception_or_all:
      return exception_ || count_ == n_;
    case WatchMode::all:
      return count_ == n_;
  }
  return true;
}

void Watch::on_done(std::size_t i, Status s) noexcept {
  // Under futs_[i]'s lock: lock_ is a leaf taken inside it, never the other way round.
  lock_.lock();
  record_locked(i, s);
  lock_.unlock();
}

void Watch::wake_if_ready() noexcept {
  lock_.lock();
  Waiter* wake = nullptr;
  if (parked_ && ready_locked()) wake = std::exchange(parked_, nullptr);
  lock_.unlock();
  if (wake) wake->notify();
}

void Watch::settle_recorded() noexcept {
  lock_.lock();
  const std::size_t upto = count_;
  lock_.unlock();
  // order_[0..upto) no longer changes: records only append.
  for (; settled_ < upto; ++settled_) await_published(futs_[order_[settled_]]);
}

Waiter::Outcome Watch::wait(int64_t deadline_ns, bool cancellable, std::source_location where) {
  std::unique_lock g(lock_);
  if (ready_locked()) {
    g.unlock();
    settle_recorded();
    return Waiter::Outcome::notified;
  }
  Waiter w;
  parked_ = &w;
  g.unlock();
  // A completion that makes the condition hold takes w and notifies it (wake_if_ready).
  bool ready = true;
  const ParkEnd e = wait_parked_until(
      w,
      [&]() noexcept {
        std::lock_guard g(lock_);
        ready = ready_locked();  // it may hold now even if nobody took w yet
        if (parked_ != &w) return false;
        parked_ = nullptr;
        return true;
      },
      cancellable, where, deadline_ns);
  settle_recorded();  // what the caller looks at next reads as done
  return ready ? Waiter::Outcome::notified : e.outcome;
}

std::size_t Watch::next() noexcept {
  lock_.lock();
  const std::size_t i = consumed_ < count_ ? order_[consumed_++] : npos;
  lock_.unlock();
  if (i != npos) await_published(futs_[i]);
  return i;
}

std::size_t Watch::first_failure() noexcept {
  lock_.lock();
  const std::size_t found = first_failure_;
  lock_.unlock();
  if (found != npos) await_published(futs_[found]);
  return found;
}

// ---- wait / gather -----------------------------------------------------------------------

void wait_many(FutureCore* const* futs, std::size_t n, int64_t deadline_ns, WatchMode mode,
               std::source_location where) {
  if (n == 0) throw std::invalid_argument("spindle::wait: the set of tasks is empty");
  Watch w(futs, n, mode);
  if (w.wait(deadline_ns, true, where) == Waiter::Outcome::cancelled) raise_own_cancel();
}

void gather_core(FutureCore* const* futs, std::size_t n, bool settled, std::source_location where) {
  std::size_t failed;
  {
    Watch w(futs, n, settled ? WatchMode::all : WatchMode::failure_or_all);
    if (w.wait(0, true, where) == Waiter::Outcome::cancelled) {
      // asyncio: cancelling a gather cancels every child, and the gather ends once they
      // all have; their outcomes count as retrieved.
      const std::string msg = own_cancel_message();
      for (std::size_t i = 0; i < n; ++i)
        if (!futs[i]->done()) cancel_core(futs[i], msg);
      for (std::size_t i = 0; i < n; ++i) {
        join_uncancellable(futs[i], where);
        mark_retrieved(futs[i]);
      }
      raise_own_cancel();
    }
    if (settled) return;
    failed = w.first_failure();
  }
  if (failed == Watch::npos) return;
  // The others keep running; asyncio marks their later exceptions retrieved.
  for (std::size_t i = 0; i < n; ++i)
    if (futs[i] != futs[failed]) silence_when_done(futs[i]);
  futs[failed]->check_outcome("gather");
}

}  // namespace spindle::detail
