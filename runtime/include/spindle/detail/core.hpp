// The shared state behind Future<T> and Task<T>, and the one waiting mechanism that
// every blocking operation in spindle uses.
//
// FutureCore owns:   the state word (status, lock bit, and for tasks the scheduling bits),
//                    the list of waiters, and a lazily made Extra (name, exception,
//                    cancel message, ...). The value lives in the derived class.
// Threads:           every field is safe to use from any thread: `waiters` and `extra`
//                    only under the lock bit; `word` only through atomic RMW operations
//                    (never a plain store), so no transition can lose another's bit.
// Invariants:        status goes pending -> {result, exception, cancelled} exactly once,
//                    under the lock; after that `extra` and the value are read-only.
//                    Waiters are detached under the lock and notified after it is released.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>

#include <spindle/detail/deadline.hpp>
#include <spindle/errors.hpp>

namespace spindle::detail {

struct FutureCore;
struct TaskHeader;
struct TaskFrame;
struct Worker;
class RuntimeImpl;
struct ReportSink;
class Waiter;

// Bits of FutureCore::sched: a task's scheduling state. Kept apart from `word` so that
// its owner can make some transitions with a plain store (a task that has not started
// is written by nobody else: wakers only look). The states, the transitions and who may
// make each are in runtime/src/core/task_state.hpp, the only code that writes `sched`.
enum : uint16_t {
  kQueued = 1u << 0,     // in a run queue (or being pushed to one)
  kRunning = 1u << 1,    // a worker is running its fibre
  kNotified = 1u << 2,   // woken while running; requeue it when it switches out
  kEnded = 1u << 3,      // its fibre has finished; never scheduled again
  kStarted = 1u << 4,    // its fibre exists (or existed)
  kFnDropped = 1u << 5,  // ended before its start, its callable already destroyed
};

// Bits of FutureCore::word.
enum : uint32_t {
  kHasExtra = 1u << 0,  // an Extra exists (set once, under kLock, when it is made)
  kLock = 1u << 4,      // spinlock over waiters / extra / status
  kStatusShift = 5,
  kStatusMask = 3u << kStatusShift,
  kCancelReq = 1u << 7,   // cancel() asked; delivered at the next suspension point
  kRetrieved = 1u << 8,   // the outcome was looked at: no "never retrieved" report
  kMovedOut = 1u << 9,    // a move-only result was moved out
  kAbandoned = 1u << 10,  // task: shutdown gave up on it for good; its next wait is its last
  kPinned = 1u << 11,     // task: never migrates off extra->home
  kIsTask = 1u << 12,
  kLateSpawn = 1u << 13,     // task: spawned after shutdown began (not auto-cancelled)
  kStickyCancel = 1u << 14,  // task: shutdown gave up on it; every wait is cancelled again
  kCustomStack = 1u << 15,   // task: extra->stack_size holds its stack size
};

enum class Status : uint8_t { pending = 0, result = 1, exception = 2, cancelled = 3 };

/// Rarely needed per-future data, allocated on first need so that the common task
/// (no name, no failure) stays small: a million live tasks must fit in 64 MB.
struct Extra {
  Waiter* waiters = nullptr;  // the future's waiter list, once it has an Extra
  std::string name;
  std::string cancel_message;
  std::exception_ptr error;
  std::shared_ptr<ReportSink> sink;  // where "never retrieved" goes (set with `error`)
  Worker* home = nullptr;            // pinned tasks: the loop they live on
  std::size_t stack_size = 0;        // 0: the runtime default
  uint64_t id = 0;                   // 0: not assigned yet
};

struct CoreOps {
  void (*destroy)(FutureCore*) noexcept;  // destroys the whole object (value, fn, memory)
  void (*run)(TaskHeader*);               // tasks: runs the body and stores its value
  /// Tasks: destroys the callable of a task that ends without starting (its captures go
  /// at once, as a body's go when it ends, not when the last handle does).
  void (*drop_fn)(TaskHeader*) noexcept = nullptr;
};

struct FutureCore {
  const CoreOps* ops;
  std::atomic<uint32_t> refs{1};
  std::atomic<uint16_t> word{0};   // the future's state: status, lock, flags
  std::atomic<uint16_t> sched{0};  // tasks only: scheduling state (kQueued, ...)
  // One word for two things: the head of the waiter list (singly linked, all woken
  // together) or, once this future has an Extra, that Extra with its low bit set (the
  // list then lives in Extra::waiters). Sharing the word keeps a task's header at 32
  // bytes, the allocator's size class below 48: 16 MB less for a million tasks. Guarded by
  // kLock while pending; it turns from list to Extra at most once and never changes
  // after that, so code that knows an Extra exists (kPinned, kCustomStack, an exception
  // outcome) may read it without the lock.
  Waiter* aux_ = nullptr;

  /// The Extra, or nullptr if none was made (see aux_ for when the lock is needed).
  Extra* extra() const noexcept {
    const auto bits = reinterpret_cast<uintptr_t>(aux_);
    return (bits & 1u) ? reinterpret_cast<Extra*>(bits - 1u) : nullptr;
  }
  /// The head of the waiter list. Under kLock.
  Waiter*& waiters() noexcept {
    if (Extra* x = extra()) return x->waiters;
    return aux_;
  }
  /// Links w at the head of the waiter list. Under kLock, while pending.
  void link_waiter(Waiter* w) noexcept;
  /// The object is being destroyed (last reference gone): tells every node still
  /// linked (a done callback of a future that never completed) that it never fires.
  void release_waiters() noexcept;

  explicit FutureCore(const CoreOps* o, uint16_t initial_word = 0) noexcept : ops(o), word(initial_word) {}
  FutureCore(const FutureCore&) = delete;
  FutureCore& operator=(const FutureCore&) = delete;

  void ref() noexcept {
    // relaxed: taking a new reference needs an existing one, which already orders us.
    refs.fetch_add(1, std::memory_order_relaxed);
  }
  void unref() noexcept {
    // acq_rel: the release publishes our last writes; the acquire (on the final drop)
    // makes every other owner's writes visible before destruction.
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) ops->destroy(this);
  }

  void lock() noexcept;
  void unlock() noexcept {
    // release: publishes what we changed under the lock to the next locker.
    word.fetch_and(uint16_t(~kLock), std::memory_order_release);
  }

  Status status() const noexcept {
    // acquire: pairs with the release in unlock() after the value/exception was stored.
    return static_cast<Status>((word.load(std::memory_order_acquire) & kStatusMask) >> kStatusShift);
  }
  bool done() const noexcept { return status() != Status::pending; }
  bool is_task() const noexcept { return word.load(std::memory_order_relaxed) & kIsTask; }

  /// Under the lock: makes `extra` if needed.
  Extra& extra_locked();

  /// Publishes the outcome. Must be called with the lock held and status pending; the
  /// caller has already stored the value (or extra->error). Releases the lock and
  /// notifies every waiter (after the release). Done callbacks are scheduled, not run.
  void publish_and_unlock(Status s) noexcept;

  /// Cancels a pending plain future (Future<T>::cancel). Returns false if done.
  bool cancel_future(const std::string& msg) noexcept;

  /// Waits until done: suspends the calling fibre, or blocks the calling foreign thread.
  /// A cancellation of the calling task is propagated to this future/task (asyncio:
  /// cancelling the awaiter cancels what it awaits); once this ends the caller's
  /// CancelledError is thrown.
  void wait_done(std::source_location where);

  /// Waits until done or until deadline_ns (CLOCK_MONOTONIC; 0 = none). Returns true if
  /// done. Unlike wait_done, a cancellation of the calling task is NOT propagated: it is
  /// raised (CancelledError) and this future is left alone; the caller decides (wait_for
  /// cancels what it waits for, shield does not).
  bool wait_done_until(int64_t deadline_ns, std::source_location where);

  /// Throws the stored exception / CancelledError; marks the outcome retrieved.
  /// Returns normally when the status is `result`. Throws InvalidStateError if pending.
  void check_outcome(const char* what);

  /// The message given to cancel(msg), "" if none.
  std::string cancel_message() const;
  std::exception_ptr exception_locked_ptr();
};

/// One waiting context: the calling fibre, or the calling foreign thread.
///
/// The waker calls notify() exactly once, from any thread; the Waiter may be destroyed
/// by its owner the moment notify() has made it signalled, so notify() touches nothing
/// of it afterwards. The waiting side calls wait(), which returns when notified or,
/// for a cancellable fibre wait, when a cancellation of the fibre's task is pending.
class Waiter {
 public:
  Waiter() noexcept;  // binds to the current fibre, or to the current thread
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  enum class Outcome : uint8_t { notified, cancelled, timed_out };

  void notify() noexcept;
  bool notified() const noexcept { return signalled_.load(std::memory_order_acquire) != 0; }
  /// After wait() returned `cancelled`: consumes the task's cancellation request and
  /// throws its CancelledError. Call only once the waiter is off every list.
  [[noreturn]] void raise_cancelled();
  /// True when the waiter is a fibre whose task has a cancellation pending (the one a
  /// cancellable wait() would end on). For a waiter that was notified and must decide
  /// whether to keep what the waker handed it (detail::sync::park). Any thread.
  bool cancel_requested() const noexcept;
  /// True when the waiter is a fibre (false: a foreign thread, which cannot be cancelled).
  bool is_fibre() const noexcept { return kind_ == Kind::fibre; }
  /// deadline_ns: CLOCK_MONOTONIC nanoseconds, or 0 for none. now_ns: a reading of that
  /// clock the caller has just taken (0: none, the wait reads it), against which a fibre
  /// decides whether the deadline has already passed; one that passes after it ends the
  /// wait by its timer.
  [[nodiscard]] Outcome wait(bool cancellable, std::source_location where, int64_t deadline_ns = 0, int64_t now_ns = 0);
  TaskHeader* task() const noexcept { return task_; }

  Waiter* next = nullptr;  // links for whichever list holds this waiter
  Waiter* prev = nullptr;
  uintptr_t tag = 0;  // free for the primitive that owns the list
  void* payload = nullptr;

 protected:
  struct CallbackTag {};
  explicit Waiter(CallbackTag) noexcept : kind_(Kind::callback) {}
  enum class Kind : uint8_t { fibre, thread, callback };
  Kind kind_;
  std::atomic<uint32_t> signalled_{0};  // also the futex word of a thread waiter
  TaskHeader* task_ = nullptr;
  friend struct FutureCore;
  virtual void fire() noexcept {}  // callback waiters: schedule the callback
  /// Callback waiters: runs under the future's lock just before its outcome `s` is
  /// published, so that whatever it records happens before anyone can see the future
  /// done (as_completed's order must respect causality across threads). It may take
  /// only leaf locks and must not touch the future beyond what it is given.
  virtual void on_complete(Status) noexcept {}
  /// The future this node is linked into is destroyed while still pending (its last
  /// handle went): the node will never fire. A node the list owns frees itself here.
  virtual void orphaned() noexcept {}

 public:
  virtual ~Waiter() = default;
};

/// A done callback, kept in the waiter list; owned by the list until fired.
///
/// It holds no reference to the future it waits on (that was a cycle: a future whose
/// callback never fired was never freed). When the future completes, fire() calls
/// keep() while the completer still holds the future, so that the callback task may use
/// it; when the future is destroyed pending, the node is deleted unfired (orphaned()).
class CallbackWaiter : public Waiter {
 public:
  CallbackWaiter(RuntimeImpl* rt, std::shared_ptr<ReportSink> sink) noexcept
      : Waiter(CallbackTag{}), rt_(rt), sink_(std::move(sink)) {}
  virtual void invoke() = 0;  // runs in a task of its own
  RuntimeImpl* runtime() const noexcept { return rt_; }
  const std::shared_ptr<ReportSink>& sink() const noexcept { return sink_; }

 protected:
  /// Called once, by fire(), while the completed future is still held by its
  /// completer: take what invoke() needs from it (a reference).
  virtual void keep() noexcept {}

 private:
  void fire() noexcept override;
  void orphaned() noexcept override { delete this; }
  RuntimeImpl* rt_;
  std::shared_ptr<ReportSink> sink_;
};

/// Waits until at least one of `futs[0..n)` is done (returns `notified` at once if one
/// already is), or until the deadline (CLOCK_MONOTONIC ns; 0 = none: `timed_out`), or a
/// cancellation of the calling task when `cancellable` (`cancelled`; nothing is
/// cancelled on its behalf: the caller decides). Suspends a fibre, blocks a thread.
/// The caller then looks at which ones are done.
Waiter::Outcome wait_any(FutureCore* const* futs, std::size_t n, int64_t deadline_ns, bool cancellable,
                         std::source_location where);

// monotonic_ns(), the clock of every deadline, and the saturating deadline helpers:
// deadline.hpp (included above).

/// Registers a done callback; schedules it at once if `core` is already done.
void add_callback(FutureCore* core, CallbackWaiter* cb);

/// Storage for a value of type T that is constructed late (or never).
template <class T>
struct ResultSlot {
  alignas(T) unsigned char buf[sizeof(T)];
  template <class... A>
  void emplace(A&&... a) {
    ::new (static_cast<void*>(buf)) T(std::forward<A>(a)...);
  }
  T& get() noexcept { return *std::launder(reinterpret_cast<T*>(buf)); }
  void destroy() noexcept { get().~T(); }
};
template <class T>
struct ResultSlot<T&> {
  T* p = nullptr;
  void emplace(T& r) { p = &r; }
  T& get() noexcept { return *p; }
  void destroy() noexcept {}
};
template <>
struct ResultSlot<void> {
  void destroy() noexcept {}
};

/// Hands a result out of a slot: copies when T is copyable (any number of getters),
/// moves when it is move-only (once: a second retrieval throws InvalidStateError).
template <class T>
T take_result(FutureCore* c, ResultSlot<T>& slot) {
  if constexpr (std::is_void_v<T>) {
    (void)c;
    (void)slot;
  } else if constexpr (std::is_reference_v<T> || std::is_copy_constructible_v<T>) {
    return slot.get();
  } else {
    // acq_rel: only one retriever may win the move.
    if (c->word.fetch_or(uint16_t(kMovedOut), std::memory_order_acq_rel) & kMovedOut)
      throw InvalidStateError("result of a move-only future was already moved out");
    return std::move(slot.get());
  }
}

// Access to the running fibre, through non-inlined functions so that no thread-local
// address is cached across a suspension (a fibre may resume on another thread).
TaskHeader* current_task_header() noexcept;
RuntimeImpl* current_runtime() noexcept;

}  // namespace spindle::detail
