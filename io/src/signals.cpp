// Signals over signalfd: each wait (or each on_signal task) opens one non-blocking
// signalfd for its set and waits for it to be readable through the reactor (FdSource),
// exactly like a socket read. Several signalfds may watch one signal: the kernel wakes
// them all, the first read consumes it, the others see EAGAIN and wait again.
//
// The signals must be blocked in every thread (see signals.hpp): a signalfd only reads
// signals that are pending, and a signal some thread has unblocked is delivered to that
// thread instead of staying pending.
#include <spindle/io/signals.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <spindle/errors.hpp>
#include <spindle/runtime.hpp>

#include "syscall.hpp"

namespace spindle {

namespace {

sigset_t make_set(std::initializer_list<int> sigs, const char* what) {
  if (sigs.size() == 0) throw std::invalid_argument(std::string(what) + ": no signal given");
  sigset_t set;
  sigemptyset(&set);
  for (int s : sigs) {
    if (s == SIGKILL || s == SIGSTOP || sigaddset(&set, s) != 0)
      throw std::invalid_argument(std::string(what) + ": signal " + std::to_string(s) + " cannot be handled");
  }
  return set;
}

void check_blocked(std::initializer_list<int> sigs, const char* what) {
  sigset_t cur;
  if (int e = pthread_sigmask(SIG_BLOCK, nullptr, &cur); e != 0) detail::throw_errno(e, "pthread_sigmask");
  for (int s : sigs) {
    if (sigismember(&cur, s) != 1)
      throw RuntimeError(std::string(what) + ": signal " + std::to_string(s) +
                         " is not blocked in this thread; call spindle::block_signals at the start of main");
  }
}

// Owns one signalfd's source; destroying it runs the source's close sequence.
struct SignalFd {
  detail::FdHandle src;
  explicit SignalFd(const sigset_t& set) {
    const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) detail::throw_errno(errno, "signalfd");
    src = detail::FdHandle::adopt(fd);
  }

  // One signal: waits for readability as a socket read does.
  int read(int64_t deadline_ns, std::source_location where) {
    signalfd_siginfo info;
    detail::io_call(src.get("read(signalfd)"), detail::Dir::read, deadline_ns, "read(signalfd)", where,
                    [&](int fd) { return ::read(fd, &info, sizeof info); });
    return int(info.ssi_signo);
  }
};

}  // namespace

void block_signals(std::initializer_list<int> sigs) {
  const sigset_t set = make_set(sigs, "block_signals");
  if (int e = pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0) detail::throw_errno(e, "pthread_sigmask");
}

int wait_signal(std::initializer_list<int> sigs, TimeLimit timeout) {
  const sigset_t set = make_set(sigs, "wait_signal");
  check_blocked(sigs, "wait_signal");
  const int64_t deadline = detail::deadline_of(timeout);
  SignalFd sfd(set);
  return sfd.read(deadline, std::source_location::current());
}

Task<> on_signal(int sig, std::function<void(int)> cb) {
  if (!cb) throw std::invalid_argument("on_signal: empty callback");
  const sigset_t set = make_set({sig}, "on_signal");
  check_blocked({sig}, "on_signal");
  if (!in_runtime()) throw RuntimeError("on_signal: no running runtime");
  // Shared so that the signalfd is closed when the task's callable goes, even if the
  // task is cancelled before its body ever runs.
  auto sfd = std::make_shared<SignalFd>(set);
  return spawn(TaskOptions{.name = "on_signal"}, [sfd, cb = std::move(cb)] {
    for (;;) cb(sfd->read(0, std::source_location::current()));
  });
}

}  // namespace spindle
