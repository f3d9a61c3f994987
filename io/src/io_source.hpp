// FdSource: the readiness state of one non-blocking fd, shared by the fibres that read
// and write it and by the reactor of the loop that owns its epoll registration.
//
// Owns:        the fd (closed by retire()), the epoll registration, the latched
//              readiness edges, at most one read waiter and one write waiter.
// Registration: lazy. The first operation that meets EAGAIN registers the fd,
//              edge-triggered for EPOLLIN|EPOLLOUT|EPOLLRDHUP, with the reactor of the
//              worker it runs on; that worker is the `owner`. A wait from another
//              loop of the same runtime takes the registration over (move_to:
//              loop_hand_over, then loop_watch on its own loop, outside the lock) when
//              the owner watches at least two more fds than that loop, so that a
//              connection whose task was stolen settles on the loop that now runs it
//              and the loops share the fds; otherwise the owner keeps it. Operations
//              that never block never touch epoll. A source outlives its runtime: once
//              the owner's runtime has shut down (its loop reports nothing any more),
//              the next wait from a worker of another runtime drops the old
//              registration and registers with its own worker, which becomes the owner.
// Threads:     on_ready() runs inside Reactor::poll on the owner's thread, or inside
//              Reactor::poll_foreign on another worker that ran out of work (one edge,
//              one caller; the lock orders them). Fibres that
//              wait may run on any worker and migrate across waits. `ready_*`,
//              `reader`, `writer`, `closer_waiting` and `owner` are guarded by `mu_`
//              (a spinlock: every critical section is a few loads and stores, plus one
//              epoll_ctl at registration (a hand-over's run outside it); re-registering after the owner's runtime
//              ended also takes that runtime's ReportSink mutex, briefly, once).
//              `closed_` may be read without the lock as a
//              hint; it is authoritative only under the lock.
// Invariants:  1. A ready flag set means "an edge arrived that no waiter consumed"; an
//                 edge handed to a waiter is not latched (the waiter retries its
//                 syscall). A waiter that gives up after its edge was handed to it
//                 (cancelled, timed out) latches the edge back, so none is lost.
//              2. The registration is removed, and the memory freed, only on the owner's
//                 thread outside Reactor::poll (a pointer to this source may sit in the
//                 owner's epoll_event array until poll returns), and only after
//                 Reactor::quiesce (nor in another worker's poll_foreign). A hand-over
//                 removes it from another thread: Reactor::hand_over does so only while
//                 the old owner is outside its poll, or waits until that poll is done,
//                 and quiesces too. The fd is closed only after it left epoll.
//              3. An operation counts itself in `ops_` for as long as it may touch the
//                 source; close() waits for that count to drain before retiring it.
//
// Close sequence (close(), any thread, once):
//   1. under the lock: mark closed, take both waiters; notify them (they fail EBADF);
//   2. announce closing in `ops_`; if operations are still inside, wait (not
//      cancellably) until the last one leaves and notifies us;
//   3. retire: on the owner's thread, remove from epoll, close the fd, delete; from
//      another worker, or a thread outside the runtime, hand that to a pinned task on
//      the owner's loop and wait (not cancellably) until it is done, so that close()
//      returns with the fd closed; if the owner's runtime has stopped, do it directly.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <source_location>

#include <spindle/detail/core.hpp>
#include <spindle/detail/spin.hpp>
#include <spindle/time_limit.hpp>

#include <spindle/internal/runtime_services.hpp>

namespace spindle::detail {

enum class Dir : uint8_t { read, write };

/// The deadline of one stream call (every syscall and wait of a SocketStream read or
/// write shares one), read from the clock when the call first waits: a call that
/// completes without waiting, as most sends and most reads of bytes already received do,
/// reads no clock. So the call's time runs from its first wait, not from its first
/// syscall: one non-blocking syscall later.
class CallDeadline {
 public:
  explicit CallDeadline(TimeLimit limit) noexcept : limit_(limit) {}
  /// True if the call has a limit (else at() is always 0).
  bool limited() const noexcept { return limit_.has_value(); }
  /// The deadline, taken from `now` (a reading of monotonic_ns()) at the first call; 0 if
  /// there is no limit. Later calls return the same deadline.
  int64_t at(int64_t now) noexcept {
    if (at_ == 0 && limit_) at_ = deadline_from(now, *limit_);
    return at_;
  }

 private:
  TimeLimit limit_;
  int64_t at_ = 0;  // 0: not taken yet (a limit beyond the clock stays 0: none)
};

class FdSource final : public IoSource {
 public:
  /// Adopts `fd`, which must be non-blocking.
  explicit FdSource(int fd) noexcept : fd_(fd) {}
  FdSource(const FdSource&) = delete;
  FdSource& operator=(const FdSource&) = delete;

  int fd() const noexcept { return fd_; }
  /// True once close() began. A hint without the lock (see the header comment).
  bool closed() const noexcept {
    // relaxed: a hint that saves a syscall on a closed stream; every decision that
    // matters re-reads it under mu_.
    return closed_.load(std::memory_order_relaxed);
  }

  /// Suspends the calling fibre until `d` may be ready again (an edge arrived since the
  /// caller's syscall failed with EAGAIN), or until deadline_ns (CLOCK_MONOTONIC; 0 =
  /// none). From a thread outside the runtime it blocks in poll(2). A deadline that has
  /// already passed does not suspend: one poll(2) look at the fd returns if it is ready
  /// (the caller retries its syscall), else TimeoutError. Throws CancelledError if the
  /// calling task is cancelled, TimeoutError at the deadline, std::system_error(EBADF,
  /// what) if the source is (or gets) closed.
  void wait(Dir d, int64_t deadline_ns, const char* what, std::source_location where) {
    wait_at(d, deadline_ns, deadline_ns != 0 ? monotonic_ns() : 0, what, where);
  }
  /// As above, with the call's deadline taken at this first wait (CallDeadline).
  void wait(Dir d, CallDeadline& dl, const char* what, std::source_location where) {
    const int64_t now = dl.limited() ? monotonic_ns() : 0;
    wait_at(d, dl.at(now), now, what, where);
  }

  /// Runs the close sequence above. Called once, by the object that owns the source;
  /// `this` must not be used afterwards. Never throws; may suspend (not cancellably)
  /// while other fibres leave their operations on this source.
  void close() noexcept;

  void on_ready(uint32_t epoll_events) noexcept override;

  /// Stream reads (epoll(7), Q9): a read that returned fewer bytes than it asked for
  /// emptied the receive queue, and every byte that arrives later brings a new edge, so
  /// the next read may wait for that edge instead of spending a syscall on EAGAIN. Not
  /// once a hang-up, a peer's shutdown or an error was reported (EPOLLRDHUP, EPOLLHUP,
  /// EPOLLERR): the end of the stream may have come with the last bytes and brings no
  /// further edge, so reads then go on until the syscall reports it. Reader only.
  bool read_drained() const noexcept {
    // relaxed: drained_ is written only by the reading fibre itself; read_closed_ is
    // set by on_ready before it notifies the reader, or before it latches the edge
    // under the lock that the reader's wait() takes. A stale `false` costs one
    // syscall; `true` is only set after a short read (note_read).
    return drained_.load(std::memory_order_relaxed) && !read_closed_.load(std::memory_order_relaxed);
  }
  /// After a stream read of `got` bytes into room for `asked`.
  void note_read(std::size_t got, std::size_t asked) noexcept {
    drained_.store(got > 0 && got < asked, std::memory_order_relaxed);  // relaxed: see read_drained
  }

  /// RAII for the ops_ count (invariant 3). Throws system_error(EBADF, what) if close()
  /// already began.
  class Op {
   public:
    Op(FdSource* s, const char* what);
    ~Op();
    Op(const Op&) = delete;
    Op& operator=(const Op&) = delete;

   private:
    static void leave(FdSource* s) noexcept;
    FdSource* s_;
  };

 private:
  ~FdSource() = default;
  void register_locked(Worker* w);  // throws system_error from epoll_ctl
  bool should_move(Worker* w) const noexcept;
  void move_to(Worker* w, std::unique_lock<SpinLock>& g);
  // Registered with a runtime that has shut down: forget that registration (owner_ =
  // null), so that the caller registers with its own loop. A no-op while it still runs.
  void drop_ended_owner_locked() noexcept;
  // wait() with `now` a reading of the clock (0 when deadline_ns is 0: none needed).
  void wait_at(Dir d, int64_t deadline_ns, int64_t now, const char* what, std::source_location where);
  void wait_foreign(Dir d, int64_t deadline_ns, const char* what);
  bool ready_now(Dir d) const noexcept;  // a poll(2) with timeout 0: may `d` progress now?
  void retire() noexcept;                // step 3 of the close sequence
  bool spawn_retirer(RuntimeImpl* rt, Waiter* done) noexcept;
  void destroy_here() noexcept;  // on the owner (or with its runtime stopped)

  static constexpr uintptr_t kTagReady = 1;       // Waiter::tag: woken by an edge
  static constexpr uintptr_t kTagClosed = 2;      // Waiter::tag: woken by close()
  static constexpr uint32_t kClosing = 1u << 31;  // in ops_: close() is waiting to retire

  const int fd_;
  SpinLock mu_;  // guards the fields the header comment lists
  std::atomic<bool> closed_{false};
  std::atomic<uint32_t> ops_{0};  // operations inside, plus kClosing
  bool ready_read_ = false;
  std::atomic<bool> drained_{false};      // the last stream read was short (reader only)
  std::atomic<bool> read_closed_{false};  // sticky: RDHUP, HUP or ERR seen (on_ready)
  bool ready_write_ = false;
  Waiter* reader_ = nullptr;
  Waiter* writer_ = nullptr;
  Waiter* closer_ = nullptr;          // written before kClosing is published; read by the last Op
  Worker* owner_ = nullptr;           // under mu_: set at registration, changed by move_to
  bool moving_ = false;               // under mu_: move_to is at work
  std::shared_ptr<ReportSink> sink_;  // the owner's runtime (liveness check from outside)
};

}  // namespace spindle::detail
