// One loop's reactor: an epoll instance plus an eventfd that other threads write to wake
// the loop when it is parked in epoll_wait.
//
// Threads: poll() is called only by the owning worker. unpark() may be called from any
// thread. Registered sources are called back on the owning worker.
#pragma once

#include <cstddef>
#include <cstdint>

namespace spindle::detail {

/// Something registered with a reactor (an fd, a signalfd, ...). on_ready runs on the
/// owning worker's scheduler stack: it must only make fibres runnable, never block.
struct IoSource {
  virtual void on_ready(uint32_t epoll_events) noexcept = 0;
 protected:
  ~IoSource() = default;
};

class Reactor {
 public:
  Reactor();
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  /// Waits up to timeout_ns (0: just look, negative: forever) and dispatches what is
  /// ready. Returns the number of events handled (the wake-up eventfd included).
  int poll(int64_t timeout_ns) noexcept;
  /// Wakes the loop out of epoll_wait (or makes its next poll return at once). Any thread.
  void unpark() noexcept;

  /// Edge-triggered registration of fd for `events`; source is called on readiness.
  void add(int fd, uint32_t events, IoSource* source);
  void modify(int fd, uint32_t events, IoSource* source);
  void remove(int fd) noexcept;
  int epoll_fd() const noexcept { return epfd_; }
  /// Registered fds (the wake-up eventfd not counted). Owner thread only.
  std::size_t sources() const noexcept { return sources_; }

 private:
  int epfd_ = -1;
  std::size_t sources_ = 0;
  int wakefd_ = -1;
};

}  // namespace spindle::detail
