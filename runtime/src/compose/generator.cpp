// Generator's hand-off between its consumer and its body (a task of its own).
//
// GenCore owns:  the phase, the two parked Waiters (consumer, producer) and the body's
//                task. The value slots live in GenState<T, In> (generator.hpp); they are
//                written by one side and read by the other, always with a lock_
//                hand-over in between, which orders them. "One side" is one consumer:
//                a consumer touches the slots only inside its claim (enter()..leave(),
//                consumer_inside_), so a second concurrent consumer is refused before
//                it writes anything.
// Phases:        unstarted -> running (body's turn) <-> suspended (consumer's turn)
//                -> finished (the body's task ended: EndNode fired).
//                Only the consumer moves running -> ... -> running; only the body moves
//                running -> suspended; only EndNode moves to finished (or close() on an
//                unstarted generator).
// References:    the Generator holds one; EndNode holds one from the start of the body
//                until it fires, so the body (which uses a raw pointer) never outlives
//                the state.
#include <spindle/generator.hpp>

#include <spindle/detail/parked_waiter.hpp>
#include <spindle/runtime.hpp>

#include <mutex>

#include "sched/runtime_impl.hpp"

namespace spindle::detail {

RuntimeImpl* generator_runtime(Runtime* rt) {
  if (rt) return rt->impl();
  RuntimeImpl* r = current_runtime();
  if (!r) throw RuntimeError("Generator: no running runtime on this thread (pass a Runtime)");
  return r;
}

GenCore::GenCore(RuntimeImpl* rt) : rt_(rt) { end_.owner = this; }

GenCore::~GenCore() = default;

void GenCore::ref() noexcept {
  // relaxed: a new reference is made from an existing one, which orders it.
  refs_.fetch_add(1, std::memory_order_relaxed);
}

void GenCore::unref() noexcept {
  // acq_rel: the release publishes this owner's writes; the acquire on the last drop
  // makes every owner's writes visible before the state is destroyed.
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

bool GenCore::started() noexcept {
  std::lock_guard g(lock_);
  return phase_ != Phase::unstarted;
}

bool GenCore::finished() noexcept {
  std::lock_guard g(lock_);
  return phase_ == Phase::finished;
}

void GenCore::EndNode::fire() noexcept { owner->on_end(); }

void GenCore::on_end() noexcept {
  Waiter* wake;
  {
    std::lock_guard g(lock_);
    phase_ = Phase::finished;
    wake = std::exchange(consumer_, nullptr);
  }
  if (wake) wake->notify();
  unref();  // EndNode's reference; the consumer's keeps the state alive if it waits
}

void GenCore::start() {
  task_ = make_body_task();
  TaskHeader* t = task_of(task_);
  ref();                           // EndNode's
  (void)link_done_node(t, &end_);  // not submitted yet, so it cannot be done
  try {
    TaskOptions o{.name = "generator"};
    submit(rt_, t, &o);
  } catch (...) {
    // submit dropped the scheduler's reference: the body never runs.
    (void)unlink_done_node(t, &end_);
    unref();  // not the last: the Generator holds one
    task_ = Task<>();
    throw;
  }
}

bool GenCore::consumer_wait_locked(bool cancellable, std::source_location where) {
  bool passed_on = false;
  while (phase_ == Phase::running) {
    Waiter w;
    consumer_ = &w;
    lock_.unlock();
    // The body (yielding or ending) takes w and notifies it.
    const Waiter::Outcome o =
        wait_parked(w, take_back_slot(lock_, consumer_, w), cancellable && !passed_on, where).outcome;
    lock_.lock();
    if (o == Waiter::Outcome::cancelled && phase_ == Phase::running) {
      // The consumer is cancelled while the body runs for it. asyncio raises the
      // CancelledError inside the body (it runs in the consumer's task); here the
      // body's task is cancelled with the same message, and the consumer waits on,
      // uncancellably, until the body yields or ends: a body that catches the
      // CancelledError and yields hands its value over instead of waiting in yield for
      // a consumer that waits for its end (this used to deadlock).
      passed_on = true;
      lock_.unlock();
      FutureCore* c = task_.core_ptr();
      try {
        cancel_task(c, own_cancel_message());
      } catch (...) {
        cancel_task(c, {});  // no memory for the message: an empty one needs none
      }
      lock_.lock();
    }
  }
  return passed_on;
}

void GenCore::enter() {
  bool busy;
  {
    std::lock_guard g(lock_);
    busy = std::exchange(consumer_inside_, true);
  }
  if (busy)
    throw InvalidStateError(
        "Generator: already running (next()/send()/close() called while another task or thread is inside one)");
}

void GenCore::leave() noexcept {
  std::lock_guard g(lock_);
  consumer_inside_ = false;
}

bool GenCore::resume(std::source_location where) {
  // next()/send() is a suspension point: a cancellation already pending is raised here,
  // before the body is resumed (so the body is not woken only to be cancelled for a
  // consumer that already left).
  if (TaskHeader* self = current_task_header(); self && cancel_pending(self) && !finished()) raise_own_cancel();
  lock_.lock();
  switch (phase_) {
    case Phase::finished:
      break;
    case Phase::unstarted:
      phase_ = Phase::running;
      lock_.unlock();
      try {
        start();
      } catch (...) {
        std::lock_guard g(lock_);
        phase_ = Phase::finished;
        throw;
      }
      lock_.lock();
      break;
    case Phase::suspended: {
      phase_ = Phase::running;
      Waiter* wake = std::exchange(producer_, nullptr);
      lock_.unlock();
      if (wake) wake->notify();
      lock_.lock();
      break;
    }
    case Phase::running:  // the body unwinds after a cancellation: wait until it yields or ends
      break;
  }
  const bool passed_on = consumer_wait_locked(true, where);
  if (phase_ == Phase::suspended) {
    // A value, even one the body yielded after catching the cancellation we passed on:
    // it is the consumer's, and the consumer's own cancellation stays pending. A body
    // cancelled in that yield() meanwhile waits for this take before it unwinds.
    uncollected_ = false;
    Waiter* body = std::exchange(collect_, nullptr);
    lock_.unlock();
    if (body) body->notify();
    return true;
  }
  // Finished: hand out the body's exception (or cancellation) once.
  const bool first = !std::exchange(outcome_taken_, true);
  lock_.unlock();
  if (first && task_) {
    FutureCore* c = task_.core_ptr();
    join_uncancellable(c, where);  // EndNode fired: it is done already
    // The body ended by the cancellation we passed on: the consumer's own CancelledError.
    if (passed_on && c->status() == Status::cancelled) raise_own_cancel();
    c->check_outcome("Generator");
  }
  return false;
}

void GenCore::close(bool rethrow, std::source_location where) {
  lock_.lock();
  if (std::exchange(consumer_inside_, true)) {
    lock_.unlock();
    if (rethrow) throw InvalidStateError("Generator: closed while another task or thread is inside next()/send()");
    return;
  }
  switch (phase_) {
    case Phase::unstarted:
      phase_ = Phase::finished;
      consumer_inside_ = false;
      lock_.unlock();
      return;
    case Phase::finished:
      consumer_inside_ = false;
      lock_.unlock();
      return;
    case Phase::suspended: {
      closing_ = true;
      phase_ = Phase::running;
      Waiter* wake = std::exchange(producer_, nullptr);
      lock_.unlock();
      if (wake) wake->notify();
      lock_.lock();
      break;
    }
    case Phase::running:
      closing_ = true;
      break;
  }
  (void)consumer_wait_locked(false, where);
  consumer_inside_ = false;
  const bool first = !std::exchange(outcome_taken_, true);
  lock_.unlock();
  FutureCore* c = task_.core_ptr();
  join_uncancellable(c, where);
  // Python's aclose() propagates what the body raised while closing. A cancellation of
  // the body is not an error of close().
  if (rethrow && first && c->status() == Status::exception) c->check_outcome("Generator::close");
}

void GenCore::yield_point(std::source_location where) {
  lock_.lock();
  if (closing_) {
    lock_.unlock();
    throw GeneratorExit();
  }
  phase_ = Phase::suspended;
  uncollected_ = true;
  Waiter* wake = std::exchange(consumer_, nullptr);
  Waiter w;
  producer_ = &w;
  lock_.unlock();
  if (wake) wake->notify();
  // The consumer (resuming or closing) takes w and notifies it.
  const Waiter::Outcome o = wait_parked(w, take_back_slot(lock_, producer_, w), true, where).outcome;
  lock_.lock();
  // Cancelled before the consumer took the value just yielded: the consumer is inside
  // next()/send(), woken by this yield (only a consumer's call lets the body run), and
  // takes it at once. The value is the consumer's (a cancellation the consumer passed
  // on often lands here, after the body received what it waited for): let it be taken
  // first, uncancellably, or it would be dropped as the body unwinds.
  while (o == Waiter::Outcome::cancelled && phase_ == Phase::suspended && uncollected_) {
    Waiter c;
    collect_ = &c;
    lock_.unlock();
    (void)c.wait(false, where);
    lock_.lock();
    if (collect_ == &c) collect_ = nullptr;  // a spurious wake-up: still linked
  }
  if (o == Waiter::Outcome::cancelled && phase_ == Phase::suspended) {
    // Cancelled while the consumer holds the turn (e.g. the runtime shuts down): the
    // body unwinds; a consumer resuming meanwhile waits for its end.
    phase_ = Phase::running;
    lock_.unlock();
    raise_own_cancel();
  }
  const bool closing = closing_;
  lock_.unlock();
  if (closing) throw GeneratorExit();
}

}  // namespace spindle::detail
