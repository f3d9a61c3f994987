#include "sched/reactor.hpp"

#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <initializer_list>
#include <system_error>

#include <spindle/detail/deadline.hpp>
#include <spindle/detail/spin.hpp>

namespace spindle::detail {

Reactor::Reactor() {
  // On failure, close what was made and throw naming the call that failed.
  auto fail = [this](const char* what) {
    const int e = errno;
    for (int fd : {timerfd_, wakefd_, epfd_})
      if (fd >= 0) ::close(fd);
    throw std::system_error(e, std::generic_category(), what);
  };
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) fail("epoll_create1");
  wakefd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakefd_ < 0) fail("eventfd");
  timerfd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (timerfd_ < 0) fail("timerfd_create");
  // Both level-triggered: an event a foreign poll takes is reported again to the owner.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // null marks the wake-up eventfd
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) fail("epoll_ctl(eventfd)");
  ev.data.ptr = &timerfd_;  // marks the timerfd
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, timerfd_, &ev) != 0) fail("epoll_ctl(timerfd)");
}

Reactor::~Reactor() {
  ::close(timerfd_);
  ::close(wakefd_);
  ::close(epfd_);
}

namespace {
// Cleared once epoll_pwait2 says ENOSYS (kernels before 5.11, or tools such as valgrind
// that do not know the call): epoll_wait with the timeout rounded up to a millisecond.
// relaxed: every thread that reads a stale `true` makes the same discovery itself.
std::atomic<bool> have_pwait2{true};

int wait_events(int epfd, epoll_event* evs, int max, int64_t timeout_ns) noexcept {
  if (timeout_ns == 0) return ::epoll_wait(epfd, evs, max, 0);
  if (have_pwait2.load(std::memory_order_relaxed)) {
    // epoll_pwait2 takes a timespec: a parked loop wakes at its earliest deadline to the
    // nanosecond, not rounded to epoll_wait's milliseconds.
    timespec ts{time_t(timeout_ns / 1'000'000'000), long(timeout_ns % 1'000'000'000)};
    const int n = ::epoll_pwait2(epfd, evs, max, timeout_ns < 0 ? nullptr : &ts, nullptr);
    if (n >= 0 || errno != ENOSYS) return n;
    have_pwait2.store(false, std::memory_order_relaxed);
  }
  return ::epoll_wait(epfd, evs, max, timeout_ns < 0 ? -1 : poll_ms(timeout_ns));  // rounded up
}
}  // namespace

int Reactor::poll(int64_t timeout_ns) noexcept {
  // seq_cst RMW (single writer, but it must come before the epoll_wait), with the fence
  // in hand_over(): either it sees this poll begun, or our epoll_wait comes after its
  // EPOLL_CTL_DEL and cannot return the source it takes.
  const uint64_t seq = polls_begun_.fetch_add(1, std::memory_order_seq_cst) + 1;
  epoll_event evs[64];
  const int n = wait_events(epfd_, evs, 64, timeout_ns);
  if (n > 0) dispatch(evs, n, true);
  // release: our last touch of any source comes before hand_over()'s acquire.
  polls_done_.store(seq, std::memory_order_release);
  return n < 0 ? 0 : n;  // EINTR: the caller loops anyway
}

void Reactor::dispatch(const epoll_event* evs, int n, bool owner) noexcept {
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.ptr == &timerfd_) {
      // Nothing to do here: the owner's loop runs its due timers after every park, and
      // its next park re-arms or disarms the timerfd, which also makes it unreadable.
    } else if (evs[i].data.ptr != nullptr) {
      static_cast<IoSource*>(evs[i].data.ptr)->on_ready(evs[i].events);
    } else if (owner) {
      // One read takes the whole count and resets it (not a semaphore eventfd). A write
      // after it leaves the fd readable, and the next poll reports it again (level-
      // triggered): a second read here would only meet EAGAIN, a syscall per wake-up.
      uint64_t v;
      [[maybe_unused]] const auto r = ::read(wakefd_, &v, sizeof v);
    }
    // A foreign poll leaves the wake-up eventfd alone: it is level-triggered, so the
    // owner still sees it at its next poll.
  }
}

int Reactor::poll_foreign() noexcept {
  // seq_cst, with the one in quiesce(): either the owner's quiesce sees us counted, or
  // our epoll_wait comes after its EPOLL_CTL_DEL and cannot return the removed source.
  foreign_.fetch_add(1, std::memory_order_seq_cst);
  epoll_event evs[64];
  const int n = ::epoll_wait(epfd_, evs, 64, 0);
  int sources = 0;
  if (n > 0) {
    dispatch(evs, n, false);
    for (int i = 0; i < n; ++i) sources += evs[i].data.ptr != nullptr && evs[i].data.ptr != &timerfd_;
  }
  // release: our last touch of any source comes before the owner's acquire in quiesce().
  foreign_.fetch_sub(1, std::memory_order_release);
  return sources;
}

// Handing an fd over: a connection's task that was stolen waits on its fd from another
// loop than the one whose epoll holds it, so every edge would ready it on the old loop
// again and a thief would have to take it back. The new loop takes the fd out of the
// old epoll here and adds it to its own (FdSource::wait). The danger is a pointer to
// the source that a poll of the old epoll returned before the EPOLL_CTL_DEL and has not
// dispatched yet: the source must not be freed while one exists (a dispatch of it only
// hands out a spurious edge, which every waiter tolerates). Foreign polls are counted in
// foreign_ (quiesce). The owner's own polls are counted in polls_begun_/polls_done_; a
// poll in progress may be asleep in epoll_wait for long, so an fd is not taken from an
// owner that is inside one when we look (it then delivers the edge itself, and the
// hand-over waits for the next wait). If the owner begins a poll between that look and
// the DEL, we wait until it is done: it began a moment ago, and is most likely a
// zero-timeout poll; one that went to sleep is woken (a spurious turn for it).
bool Reactor::hand_over(int fd) noexcept {
  // seq_cst: see poll(). acquire on polls_done_: the owner's dispatch of an earlier
  // poll is over before we go on.
  const uint64_t begun = polls_begun_.load(std::memory_order_seq_cst);
  if (polls_done_.load(std::memory_order_acquire) != begun) return false;
  if (::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) != 0) return false;
  sources_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: see sources()
  // seq_cst fence: the DEL comes before the look below (pairs with poll()'s RMW).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint64_t now = polls_begun_.load(std::memory_order_seq_cst);
  if (now != begun) {
    Backoff b;
    bool woken = false;
    for (unsigned i = 0; polls_done_.load(std::memory_order_acquire) < now; ++i) {
      if (i == 64 && !woken) {
        unpark();
        woken = true;
      }
      b.pause();
    }
  }
  quiesce();
  return true;
}

void Reactor::quiesce() const noexcept {
  // seq_cst: see poll_foreign(). A foreign poll holds a pointer only between its
  // epoll_wait and its dispatch, a few microseconds.
  Backoff b;
  while (foreign_.load(std::memory_order_seq_cst) != 0) b.pause();
}

// How long a park in epoll waits for deadline_ns (negative: none). A timeout given to
// epoll_wait arms a kernel timer at every park and cancels it at every wake-up that
// comes first, which is most of them in a server (its deadlines are timeouts that
// rarely expire): 0.9 us per park on this project's 2-core VM, 8% of a paced HTTP
// server's CPU per request. So a deadline further away than kNearDeadline is left to the
// timerfd, which stays armed across parks: it is re-armed only when the deadline comes
// before the time it is armed for, or once that time has passed. Armed earlier than the
// deadline (a later deadline replaced the earliest, as a served connection's idle
// timeout does), it wakes the loop early once, and the next park arms it for the
// deadline then. The I/O watcher's 1 ms look (worker.hpp, kIoStealPark) is such a
// deadline too: most of its parks end earlier, by work or I/O. Near deadlines (a sleep
// about to end) go to epoll_wait's own timeout: they mostly fire, and a timerfd that
// fires must be armed again, a system call.
int64_t Reactor::epoll_timeout(int64_t deadline_ns, int64_t now_ns) noexcept {
  constexpr int64_t kNearDeadline = 200'000;  // ns
  if (deadline_ns < 0 && timer_at_ < 0) return -1;
  // A reading a moment old only lengthens the wait by that moment, or keeps a timerfd
  // that has just fired as armed (its readiness then ends the wait at once).
  const int64_t now = now_ns >= 0 ? now_ns : monotonic_ns();
  if (deadline_ns >= 0 && deadline_ns - now > kNearDeadline) {
    if (timer_at_ <= now || timer_at_ > deadline_ns) arm_timer(deadline_ns);
    return -1;
  }
  // Once its time has passed the timerfd stays readable (level-triggered) and would end
  // every wait at once: disarming it also resets that. One still to come may stay: it
  // wakes the loop once, early.
  if (timer_at_ >= 0 && timer_at_ <= now) arm_timer(-1);
  if (deadline_ns < 0) return -1;
  return deadline_ns > now ? deadline_ns - now : 0;
}

// Arms the timerfd for the monotonic time at_ns, or disarms it (negative). Either also
// resets its expiry count, so it is no longer readable.
void Reactor::arm_timer(int64_t at_ns) noexcept {
  itimerspec its{};
  // An all-zero it_value disarms; an armed time is never 0 (the clock started long ago).
  if (at_ns >= 0) its.it_value = {time_t(at_ns / 1'000'000'000), long(at_ns % 1'000'000'000)};
  // Cannot fail with a valid fd and a normalised time.
  [[maybe_unused]] const int r = ::timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &its, nullptr);
  timer_at_ = at_ns;
}

// The futex word is the atomic itself: the kernel compares its 32 bits.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free);

int Reactor::park(int64_t deadline_ns, int64_t now_ns) noexcept {
  // Only the owner registers fds, so a zero cannot become nonzero while we sleep on the
  // futex (reactor.hpp); a hand-over may take our last fd while we sleep in epoll, which
  // only leaves the eventfd to wake us.
  const bool futex = sources() == 0;
  int n = 0;
  // acquire: if we take a notification here, the notifier's work (published before its
  // release exchange in unpark) is visible to the re-check that follows our return.
  if (park_state_.exchange(futex ? kParkedFutex : kParkedEpoll, std::memory_order_acquire) != kNotified) {
    if (futex) {
      timespec ts{};
      if (deadline_ns >= 0) ts = {time_t(deadline_ns / 1'000'000'000), long(deadline_ns % 1'000'000'000)};
      // relaxed: only decides whether to sleep again; the exchange below orders the rest.
      while (park_state_.load(std::memory_order_relaxed) == kParkedFutex) {
        // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline (the timers'
        // clock). It sleeps only if the word still holds kParkedFutex: an unpark that
        // came before the call makes it return at once (EAGAIN).
        const long r =
            ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&park_state_), FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG,
                      uint32_t(kParkedFutex), deadline_ns >= 0 ? &ts : nullptr, nullptr, FUTEX_BITSET_MATCH_ANY);
        if (r != 0 && errno == ETIMEDOUT) break;
        // Woken, EAGAIN or EINTR: the loop condition decides.
      }
    } else {
      n = poll(epoll_timeout(deadline_ns, now_ns));
    }
  } else if (!futex) {
    n = poll(0);  // not sleeping, but what is ready is dispatched now rather than a turn later
  }
  // acquire: as above, for a notification that came while we slept. From here on an
  // unpark() is a plain exchange (it finds kAwake): we look at our queues before we
  // park again, and a kNotified left by it makes that park return at once.
  park_state_.exchange(kAwake, std::memory_order_acquire);
  return n;
}

void Reactor::unpark() noexcept {
  // release: the work our caller published before this is visible to the owner's
  // acquire exchange in park(). An exchange reads the latest value, so we know how (and
  // whether) the owner sleeps.
  switch (park_state_.exchange(kNotified, std::memory_order_release)) {
    case kParkedFutex:
      ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&park_state_), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, nullptr,
                nullptr, 0);
      break;
    case kParkedEpoll: {
      const uint64_t one = 1;
      // A full counter (EAGAIN) already means "wake up"; nothing else can fail here.
      [[maybe_unused]] auto r = ::write(wakefd_, &one, sizeof one);
      break;
    }
    default:  // awake (or already notified): its next park() returns at once
      break;
  }
}

void Reactor::add(int fd, uint32_t events, IoSource* source) {
  epoll_event ev{};
  ev.events = events | EPOLLET;
  ev.data.ptr = source;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl(ADD)");
  sources_.fetch_add(1, std::memory_order_relaxed);  // relaxed: see sources()
}

void Reactor::modify(int fd, uint32_t events, IoSource* source) {
  epoll_event ev{};
  ev.events = events | EPOLLET;
  ev.data.ptr = source;
  if (::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl(MOD)");
}

void Reactor::remove(int fd) noexcept {
  if (::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) == 0 && sources() > 0)
    sources_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: see sources()
}

}  // namespace spindle::detail
