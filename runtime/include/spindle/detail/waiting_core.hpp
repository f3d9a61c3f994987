// The non-template machinery behind the ways of waiting on many (waiting.hpp), TaskGroup,
// JobScheduler and Generator. Implemented in runtime/src/combinators.cpp.
//
// Owns:        nothing global. A Watch belongs to the one call (wait, gather,
//              as_completed) that made it; it lives on that caller's side.
// Mechanism:   one DoneNode per watched future, linked into the future's waiter list.
//              When the future completes, its completer records the completion under
//              the Watch's SpinLock (on_complete, still under the future's lock and
//              before the outcome is published: so a completion caused by seeing this
//              future done is always recorded after it), then, after the future's lock
//              is released, calls fire(), which notifies the one parked Waiter once the
//              Watch's condition holds. The consumer waits for each recorded future's
//              publication (a few instructions) before it hands it out.
// Invariants:  a node is either linked in its future's list, or detached and about to
//              fire, or fired and `landed`. The Watch frees its nodes only after taking
//              each one back from its list or seeing it landed, so no completer ever
//              touches freed memory. A parked Waiter taken by a notifier is not
//              destroyed before that notify has landed (Waiter::notified()).
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <source_location>
#include <string>

#include <spindle/detail/core.hpp>
#include <spindle/detail/deadline.hpp>
#include <spindle/detail/spin.hpp>

namespace spindle::detail {

/// A callback-kind Waiter: fire() runs (on the completer's thread, never under the
/// future's lock) when the future it is linked to completes.
class DoneNode : public Waiter {
 public:
  DoneNode() noexcept : Waiter(CallbackTag{}) {}
};

/// A DoneNode that its owner frees (it lives on the owner's stack, or in an array the
/// owner holds), not the list: fire() must end with landed(), after which the completer
/// no longer touches it, and the owner gives it up only through reclaim().
class OwnedDoneNode : public DoneNode {
 public:
  /// Takes the node back from c's waiter list (true), or, if a completer detached it
  /// first, waits until that completer's fire() has landed (false; a window of a few
  /// instructions, unless its thread is preempted). Either way the node may go then.
  bool reclaim(FutureCore* c) noexcept;

 protected:
  /// The last thing fire() does.
  void landed() noexcept {
    // release: pairs with the acquire in reclaim(); the owner may free the node after it.
    landed_.store(true, std::memory_order_release);
  }

 private:
  std::atomic<bool> landed_{false};
};

/// Links `node` into c's waiter list unless c is already done (returns false then).
bool link_done_node(FutureCore* c, Waiter* node) noexcept;
/// Takes `node` back from c's waiter list; false if a completer detached it first (it
/// fires, or has fired).
bool unlink_done_node(FutureCore* c, Waiter* node) noexcept;

/// Waits on one future without allocating: `notified` once c is done, `timed_out` at
/// deadline_ns (0: none), `cancelled` when cancellable and the calling task is cancelled
/// (nothing is cancelled on its behalf; the cancellation stays pending). If c completed
/// just as the wait ended for another reason, the outcome says that reason but
/// c->done() is true — except `timed_out`, which then becomes `notified`.
Waiter::Outcome wait_one(FutureCore* c, int64_t deadline_ns, bool cancellable, std::source_location where);

/// Waits until c is done, whatever happens to the calling task meanwhile (a pending
/// cancellation stays pending). Suspends a fibre, blocks a thread.
void join_uncancellable(FutureCore* c, std::source_location where) noexcept;
/// Cancels c (a task or a plain future) with msg; false if it was done.
bool cancel_core(FutureCore* c, std::string msg);
/// Cancels c if pending and waits for it to end, ignoring the caller's cancellation.
/// For guards on paths that leave by an exception. Never throws.
void cancel_and_join(FutureCore* c, std::source_location where) noexcept;
/// Sets c's "retrieved" bit once it is done (now, or later through a node of its own),
/// so that an exception nobody will look at is not reported. asyncio's gather does this
/// for the children whose failure comes after the gather already raised.
void silence_when_done(FutureCore* c);

/// The calling task's pending cancel message ("" outside a task or if none).
std::string own_cancel_message();
/// Consumes the calling task's pending cancellation and throws its CancelledError.
[[noreturn]] void raise_own_cancel();

/// wait_for's engine: returns once c is done and its outcome is the caller's to report
/// (value or exception), after cancelling and joining it if the deadline passed first.
/// Throws TimeoutError if c ended cancelled by the deadline. If the caller is cancelled,
/// c is cancelled with the same message and joined; then CancelledError is thrown if c
/// ended cancelled, else this returns (c's value or error is handed out, never dropped)
/// and the caller's cancellation stays pending.
void wait_for_core(FutureCore* c, int64_t deadline_ns, std::source_location where);
/// shield's engine: waits for c; the caller's cancellation raises CancelledError in the
/// caller and leaves c running, its outcome marked retrieved once it ends. If c
/// completes as the caller is cancelled, returns (the caller's cancellation stays
/// pending).
void shield_core(FutureCore* c, std::source_location where);

/// When a Watch wakes its waiter.
enum class WatchMode : uint8_t {
  any,               // a completion not yet handed out by next() (FIRST_COMPLETED, as_completed)
  failure_or_all,    // one ended with an exception or cancelled, or all done (gather)
  exception_or_all,  // one ended with an exception (not a cancellation), or all done (FIRST_EXCEPTION)
  all,               // all done (ALL_COMPLETED, gather_settled)
};

/// Watches n futures and records the order in which they complete. Futures already done
/// when the Watch is made are recorded first, in input order. The Watch copies the
/// pointers but takes no references: the caller keeps the futures alive (holds their
/// handles) for the Watch's lifetime. One consumer at a time.
class Watch {
 public:
  Watch(FutureCore* const* futs, std::size_t n, WatchMode mode);  // throws std::bad_alloc
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  /// Waits until the mode's condition holds (`notified`), or until deadline_ns (0: none;
  /// `timed_out`), or, when cancellable, until the calling task is cancelled
  /// (`cancelled`; nothing is cancelled on its behalf and the cancellation stays pending).
  /// If the condition holds when the wait ends for another reason, returns `notified`.
  [[nodiscard]] Waiter::Outcome wait(int64_t deadline_ns, bool cancellable, std::source_location where);
  /// The index of the next completion not handed out yet, or npos.
  std::size_t next() noexcept;
  /// The index of the earliest completion (in time) that was a failure, or npos.
  std::size_t first_failure() noexcept;
  std::size_t size() const noexcept { return n_; }
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 private:
  struct Node;
  bool ready_locked() const noexcept;
  void record_locked(std::size_t i, Status s) noexcept;
  void on_done(std::size_t i, Status s) noexcept;  // under futs_[i]'s lock
  void wake_if_ready() noexcept;
  void settle_recorded() noexcept;  // consumer: every recorded future reads as done

  std::size_t n_;
  WatchMode mode_;
  FutureCore** futs_ = nullptr;  // owned copy of the pointers
  Node* nodes_ = nullptr;        // owned; n_ of them
  uint32_t* order_ = nullptr;    // owned; completion order, count_ entries valid
  SpinLock lock_;
  std::size_t count_ = 0;             // guarded by lock_
  std::size_t consumed_ = 0;          // guarded by lock_: completions handed out by next()
  bool failure_ = false;              // guarded by lock_
  bool exception_ = false;            // guarded by lock_
  std::size_t first_failure_ = npos;  // guarded by lock_
  Waiter* parked_ = nullptr;          // guarded by lock_: the consumer's Waiter while it waits
  std::size_t settled_ = 0;           // consumer only: order_[0..settled_) are known published
};

/// wait()'s engine: returns when the mode's condition holds or the deadline passes.
/// Throws std::invalid_argument for n == 0, CancelledError if the caller is cancelled
/// (the futures are left alone, as asyncio.wait does).
void wait_many(FutureCore* const* futs, std::size_t n, int64_t deadline_ns, WatchMode mode, std::source_location where);

/// gather's engine. Returns when all are done. Without `settled`, the first failure in
/// time is thrown as soon as it happens (the others go on; their later failures are not
/// reported as unretrieved). If the caller is cancelled, every child is cancelled and
/// joined, then CancelledError is thrown.
void gather_core(FutureCore* const* futs, std::size_t n, bool settled, std::source_location where);

}  // namespace spindle::detail
