// UdpSocket.
#include <spindle/io/udp.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "syscall.hpp"

namespace spindle {

using detail::throw_errno;

namespace {
// Makes a datagram socket for `a`, applies `setup(fd)` (bind or connect) on it.
template <class F>
detail::FdHandle make_udp(const SocketAddress& a, F&& setup) {
  const int fd = ::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "socket");
  try {
    setup(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  return detail::FdHandle::adopt(fd);
}

template <class F>
detail::FdHandle first_that_works(std::string_view host, uint16_t port, F&& make) {
  std::exception_ptr last;
  for (const SocketAddress& a : resolve(host, port)) {
    try {
      return make(a);
    } catch (const std::system_error&) {
      last = std::current_exception();
    }
  }
  if (last) std::rethrow_exception(last);
  throw std::system_error(EADDRNOTAVAIL, std::generic_category(), "no address for " + std::string(host));
}
}  // namespace

UdpSocket UdpSocket::bind(std::string_view host, uint16_t port, bool reuse_port) {
  UdpSocket u;
  u.src_ = first_that_works(host.empty() ? "0.0.0.0" : host, port, [&](const SocketAddress& a) {
    return make_udp(a, [&](int fd) {
      const int one = 1;
      if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) throw_errno(errno, "setsockopt");
      if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        throw_errno(errno, "setsockopt(SO_REUSEPORT)");
      if (::bind(fd, a.data(), a.size()) != 0) throw_errno(errno, "bind");
    });
  });
  return u;
}

UdpSocket UdpSocket::connect(std::string_view host, uint16_t port) {
  UdpSocket u;
  u.src_ = first_that_works(host, port, [&](const SocketAddress& a) {
    return make_udp(a, [&](int fd) {
      if (::connect(fd, a.data(), a.size()) != 0) throw_errno(errno, "connect");
    });
  });
  return u;
}

SocketAddress UdpSocket::local_address() const {
  return detail::sock_name(src_.get("getsockname")->fd(), false, "getsockname");
}

std::size_t UdpSocket::send_to(const void* buf, std::size_t n, const SocketAddress& to) {
  return std::size_t(detail::io_call(src_.get("sendto"), detail::Dir::write, 0, "sendto",
                                     std::source_location::current(),
                                     [&](int fd) { return ::sendto(fd, buf, n, MSG_NOSIGNAL, to.data(), to.size()); }));
}

std::size_t UdpSocket::send(const void* buf, std::size_t n) {
  return std::size_t(detail::io_call(src_.get("send"), detail::Dir::write, 0, "send", std::source_location::current(),
                                     [&](int fd) { return ::send(fd, buf, n, MSG_NOSIGNAL); }));
}

RecvResult UdpSocket::recv_from(void* buf, std::size_t n, SocketAddress* from, TimeLimit timeout) {
  if (n == 0) throw std::invalid_argument("UdpSocket::recv_from: buffer of size 0");
  detail::FdSource* s = src_.get("recvfrom");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int64_t dl = detail::deadline_of(timeout);
  const auto r = detail::io_call(s, detail::Dir::read, dl, "recvfrom", std::source_location::current(), [&](int fd) {
    len = sizeof ss;
    // MSG_TRUNC: recvfrom returns the datagram's real size even when it exceeds n.
    return ::recvfrom(fd, buf, n, MSG_TRUNC, reinterpret_cast<sockaddr*>(&ss), &len);
  });
  if (from) *from = SocketAddress(reinterpret_cast<sockaddr*>(&ss), len);
  const auto full = std::size_t(r);
  return RecvResult{.size = std::min(full, n), .datagram_size = full, .truncated = full > n};
}

}  // namespace spindle
