// The one pattern every spindle socket operation follows: try the syscall first, and
// wait on the fd's readiness only when it says EAGAIN.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <source_location>
#include <system_error>

#include <spindle/io/address.hpp>
#include <spindle/io/fd_handle.hpp>

#include "io_source.hpp"

namespace spindle::detail {

[[noreturn]] inline void throw_errno(int e, const char* what) {
  throw std::system_error(e, std::generic_category(), what);
}

/// recv(2) and send(2) as bare system calls. glibc's wrappers are cancellation points:
/// in a process with more than one thread (any runtime: its loops run on threads of their
/// own) each call takes two atomic read-modify-writes on the thread's cancellation state
/// around the system call, for pthread_cancel, which nothing in spindle uses; a
/// keep-alive request on a stream costs one recv and one send, and the wrappers were
/// ~140 of its ~2,900 user-space instructions. Only the non-blocking calls go bare: a
/// thread outside the runtime still blocks in poll(2) (FdSource::wait_foreign), which
/// stays a cancellation point. Sanitizer builds keep the wrappers, which the sanitizers
/// intercept (ASan checks the buffers; TSan orders a send before the recv that gets its
/// bytes). As the wrappers: -1 with errno set on failure.
inline ssize_t sys_recv(int fd, void* buf, std::size_t n, int flags) noexcept {
#if defined(SPINDLE_ASAN) || defined(SPINDLE_TSAN)
  return ::recv(fd, buf, n, flags);
#else
  return ::syscall(SYS_recvfrom, fd, buf, n, flags, nullptr, nullptr);
#endif
}
inline ssize_t sys_send(int fd, const void* buf, std::size_t n, int flags) noexcept {
#if defined(SPINDLE_ASAN) || defined(SPINDLE_TSAN)
  return ::send(fd, buf, n, flags);
#else
  return ::syscall(SYS_sendto, fd, buf, n, flags, nullptr, 0);
#endif
}

/// io_call's loop, for a caller that already holds an FdSource::Op on s: an operation
/// made of several syscalls (SocketStream::read_exact) stays counted until it no longer
/// touches its object, since close() returns as soon as the count drains.
/// `deadline`: an int64_t deadline (CLOCK_MONOTONIC ns, 0 = none), or a CallDeadline& taken
/// at the first wait.
template <class Call, class Transient, class Deadline>
auto io_call_held(FdSource* s, Dir d, Deadline&& deadline, const char* what, std::source_location where, Call&& call,
                  Transient&& transient, bool wait_first = false) {
  if (wait_first) s->wait(d, deadline, what, where);
  for (;;) {
    if (s->closed()) throw_errno(EBADF, what);
    const auto r = call(s->fd());
    if (r >= 0) return r;
    const int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      s->wait(d, deadline, what, where);
    } else if (e != EINTR && !transient(e)) {
      throw_errno(e, what);
    }
  }
}

/// Runs call(fd) until it returns >= 0 (returned) or fails with an error other than
/// EINTR / EAGAIN (thrown as system_error(errno, what)), waiting for `d` readiness on
/// EAGAIN. `transient(errno)` may ask for a retry of other errors (accept's ECONNABORTED).
/// `wait_first`: the fd is known not to be ready yet (FdSource::read_drained), so wait
/// for its next edge before the first try.
/// Counts itself in s's operations (FdSource::Op) for the call.
template <class Call, class Transient, class Deadline>
auto io_call(FdSource* s, Dir d, Deadline&& deadline, const char* what, std::source_location where, Call&& call,
             Transient&& transient, bool wait_first = false) {
  FdSource::Op op(s, what);
  return io_call_held(s, d, deadline, what, where, std::forward<Call>(call), std::forward<Transient>(transient),
                      wait_first);
}

template <class Call, class Deadline>
auto io_call(FdSource* s, Dir d, Deadline&& deadline, const char* what, std::source_location where, Call&& call) {
  return io_call(s, d, deadline, what, where, std::forward<Call>(call), [](int) { return false; });
}

/// Makes fd non-blocking and close-on-exec. Throws system_error.
void set_nonblocking(int fd);

/// write(2) to a pipe with SIGPIPE held back in the calling thread: a reader that is gone
/// is EPIPE, and the SIGPIPE that write raised is consumed (process.cpp).
ssize_t write_nosigpipe(int fd, const void* buf, std::size_t n);

/// resolve(host, port), giving up at deadline_ns (0: none) with TimeoutError: a name
/// looked up on a thread is abandoned (its late answer dropped). Defined in address.cpp.
std::vector<SocketAddress> resolve_until(std::string_view host, uint16_t port, int64_t deadline_ns);

/// Makes a socket of `type` for a's family and connects it before deadline_ns (0: none);
/// returns its source. Throws system_error, TimeoutError, CancelledError (the socket is
/// closed on every failure).
FdHandle connect_source(const SocketAddress& a, int type, int64_t deadline_ns);
/// Accepts one connection on a listening socket (non-blocking, close-on-exec), retrying
/// transient errors. Throws system_error (EMFILE...), TimeoutError, CancelledError.
int accept_fd(FdSource* s, sockaddr_storage* ss, socklen_t* len, int64_t deadline_ns);
/// getsockname / getpeername.
SocketAddress sock_name(int fd, bool peer, const char* what);

}  // namespace spindle::detail
