// One loop's reactor: an epoll instance, and the loop's parking place. A loop parks on a
// futex when it watches no fds, else in epoll_wait (with an eventfd other threads write
// to wake it): a futex wake-up is one system call on each side, an eventfd one is a write,
// an epoll return and a read. In epoll, a deadline more than a moment away is left to a
// timerfd that stays armed across parks (epoll_timeout() in reactor.cpp), rather than
// to a timeout that arms and cancels a kernel timer at every park.
//
// Parking (park/unpark): one word, park_state_, changed only by exchange: kAwake while
// the loop runs, kParkedFutex or kParkedEpoll while it sleeps, kNotified once unpark()
// came. unpark() swaps in kNotified and wakes the sleeper it replaced (futex wake or
// eventfd write; nothing if the loop was awake). park() swaps in its parked value: if it
// took kNotified, it does not sleep at all; otherwise an unpark() that comes later sees
// the parked value and wakes it, and the futex wait itself sleeps only while the word
// still holds kParkedFutex. So no unpark() is lost, whichever comes first. The futex path
// is safe because only the owning loop registers fds (loop_watch): a loop parked on the
// futex cannot gain an fd whose events would need its epoll while it sleeps.
//
// Threads: poll() is called only by the owning worker; poll_foreign() by another worker
// of the same runtime that has run out of work, so that the events of a loop whose
// thread the OS has preempted are not held until it runs again. Each edge is delivered
// to one caller only, but two edges of one source (in, out) may be dispatched at once on
// two threads: a source orders them with its own lock. unpark() may be called from any thread. A source may be freed
// only after remove() and then quiesce() (no foreign poll still holds its pointer), or
// after hand_over(), which waits for the owner's own poll too.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <spindle/internal/runtime_services.hpp>  // IoSource

struct epoll_event;

namespace spindle::detail {

class Reactor {
 public:
  Reactor();
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  /// Waits up to timeout_ns (0: just look, negative: forever) and dispatches what is
  /// ready. Returns the number of events handled (the wake-up eventfd included).
  int poll(int64_t timeout_ns) noexcept;
  /// Another worker looks without waiting and dispatches what is ready (the wake-up
  /// eventfd is left to the owner). Returns the number of sources dispatched.
  int poll_foreign() noexcept;
  /// Waits until no poll_foreign() is in progress: after remove(fd), a source's pointer
  /// can no longer be in anyone's hands.
  void quiesce() const noexcept;
  /// Owner only: sleeps until unpark(), an event on a watched fd (dispatched here), or
  /// the monotonic deadline_ns (negative: none). With no fds watched, on a futex;
  /// otherwise in epoll_wait. now_ns: the caller's recent reading of the clock, or
  /// negative (then read here if needed). Returns the number of epoll events handled.
  int park(int64_t deadline_ns, int64_t now_ns = -1) noexcept;
  /// Wakes the loop out of park(), or makes its next park() return at once. Any thread.
  void unpark() noexcept;

  /// Edge-triggered registration of fd for `events`; source is called on readiness.
  void add(int fd, uint32_t events, IoSource* source);
  void modify(int fd, uint32_t events, IoSource* source);
  void remove(int fd) noexcept;
  /// Another loop of the same runtime takes fd over (to register it with its own
  /// reactor): removes fd unless the owner is inside a poll of its own (asleep in it,
  /// or dispatching what it returned), and then waits until no poll, the owner's or a
  /// foreign one, can still hold the source's pointer. False: nothing changed (the
  /// owner was polling, or epoll_ctl failed). Any thread but the owner's; see
  /// "Handing an fd over" in reactor.cpp.
  bool hand_over(int fd) noexcept;
  int epoll_fd() const noexcept { return epfd_; }
  /// Registered fds (the wake-up eventfd not counted). Only the owner raises it (add);
  /// a hand-over from another thread may lower it at any time, so on the owner's
  /// thread a nonzero count may be stale high (a zero stays zero until the owner adds),
  /// and on others it is a hint.
  std::size_t sources() const noexcept {
    // relaxed: a count whose readers only choose a path (futex or epoll park, which
    // reactors to poll); neither choice is wrong with a stale value (see park()).
    return sources_.load(std::memory_order_relaxed);
  }

 private:
  void dispatch(const ::epoll_event* evs, int n, bool owner) noexcept;
  int64_t epoll_timeout(int64_t deadline_ns, int64_t now_ns) noexcept;
  void arm_timer(int64_t at_ns) noexcept;
  int epfd_ = -1;
  std::atomic<std::size_t> sources_{0};
  std::atomic<int> foreign_{0};  // poll_foreign() calls in progress
  // The owner's polls begun and done (poll(): counted before the epoll_wait and after
  // the dispatch); equal while the owner holds no event it has not dispatched. Single
  // writer each; read by hand_over().
  std::atomic<uint64_t> polls_begun_{0};
  std::atomic<uint64_t> polls_done_{0};
  int wakefd_ = -1;
  // A timerfd in the epoll that wakes a loop parked in epoll for a deadline more than
  // kNearDeadline away (see epoll_timeout()), and the time it is armed for (monotonic
  // ns; -1: disarmed). Owner only.
  int timerfd_ = -1;
  int64_t timer_at_ = -1;
  enum : uint32_t { kAwake, kParkedFutex, kParkedEpoll, kNotified };
  std::atomic<uint32_t> park_state_{kAwake};  // see "Parking" above; also the futex word
};

}  // namespace spindle::detail
