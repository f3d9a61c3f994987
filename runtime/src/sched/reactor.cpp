#include "sched/reactor.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <spindle/detail/spin.hpp>

namespace spindle::detail {

Reactor::Reactor() {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  wakefd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakefd_ < 0) {
    const int e = errno;
    ::close(epfd_);
    throw std::system_error(e, std::generic_category(), "eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // null marks the wake-up eventfd
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) {
    const int e = errno;
    ::close(wakefd_);
    ::close(epfd_);
    throw std::system_error(e, std::generic_category(), "epoll_ctl(eventfd)");
  }
}

Reactor::~Reactor() {
  ::close(wakefd_);
  ::close(epfd_);
}

int Reactor::poll(int64_t timeout_ns) noexcept {
  epoll_event evs[64];
  int n;
  if (timeout_ns == 0) {
    n = ::epoll_wait(epfd_, evs, 64, 0);
  } else {
    // epoll_pwait2 takes a timespec: a parked loop wakes at its earliest deadline to the
    // nanosecond, not rounded to epoll_wait's milliseconds.
    timespec ts{time_t(timeout_ns / 1'000'000'000), long(timeout_ns % 1'000'000'000)};
    n = ::epoll_pwait2(epfd_, evs, 64, timeout_ns < 0 ? nullptr : &ts, nullptr);
  }
  if (n < 0) return 0;  // EINTR: the caller loops anyway
  dispatch(evs, n, true);
  return n;
}

void Reactor::dispatch(const epoll_event* evs, int n, bool owner) noexcept {
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.ptr != nullptr) {
      static_cast<IoSource*>(evs[i].data.ptr)->on_ready(evs[i].events);
    } else if (owner) {
      uint64_t v;
      while (::read(wakefd_, &v, sizeof v) == sizeof v) {
      }
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
    for (int i = 0; i < n; ++i) sources += evs[i].data.ptr != nullptr;
  }
  // release: our last touch of any source comes before the owner's acquire in quiesce().
  foreign_.fetch_sub(1, std::memory_order_release);
  return sources;
}

void Reactor::quiesce() const noexcept {
  // seq_cst: see poll_foreign(). A foreign poll holds a pointer only between its
  // epoll_wait and its dispatch, a few microseconds.
  Backoff b;
  while (foreign_.load(std::memory_order_seq_cst) != 0) b.pause();
}

void Reactor::unpark() noexcept {
  const uint64_t one = 1;
  // A full counter (EAGAIN) already means "wake up"; nothing else can fail here.
  [[maybe_unused]] auto r = ::write(wakefd_, &one, sizeof one);
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
