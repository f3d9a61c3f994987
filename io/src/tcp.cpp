// TcpStream (connect, options, addresses) and TcpListener (bind, listen, accept).
#include <spindle/io/tcp.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <utility>

#include <spindle/errors.hpp>

#include "syscall.hpp"

namespace spindle {

namespace detail {

FdHandle connect_source(const SocketAddress& a, int type, int64_t deadline_ns) {
  const int fd = ::socket(a.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "socket");
  FdHandle h = FdHandle::adopt(fd);  // closes the half-made socket on every failure, cancellation included
  FdSource* s = h.get("connect");
  int r;
  do {
    r = ::connect(fd, a.data(), a.size());
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) throw_errno(errno, "connect");
    for (;;) {
      // Writable means connected or failed; SO_ERROR tells which.
      {
        FdSource::Op op(s, "connect");
        s->wait(Dir::write, deadline_ns, "connect", std::source_location::current());
      }
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) throw_errno(errno, "getsockopt(SO_ERROR)");
      if (err != 0) throw_errno(err, "connect");
      sockaddr_storage ss;
      len = sizeof ss;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) break;
      if (errno != ENOTCONN) throw_errno(errno, "connect");
      // An early edge (the socket is not connected yet): wait for the next one.
    }
  }
  return h;
}

int accept_fd(FdSource* s, sockaddr_storage* ss, socklen_t* len, int64_t deadline_ns) {
  return io_call(
      s, Dir::read, deadline_ns, "accept", std::source_location::current(),
      [&](int lfd) {
        *len = sizeof *ss;
        return ::accept4(lfd, reinterpret_cast<sockaddr*>(ss), len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      },
      [](int e) {
        // The connection died before we took it, or a network error accept(2) says
        // to treat like EAGAIN: take the next one.
        return e == ECONNABORTED || e == EPROTO || e == ENETDOWN || e == ENOPROTOOPT || e == EHOSTDOWN || e == ENONET ||
               e == EHOSTUNREACH || e == EOPNOTSUPP || e == ENETUNREACH;
      });
}

SocketAddress sock_name(int fd, bool peer, const char* what) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                     : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) throw_errno(errno, what);
  return SocketAddress(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace detail

namespace {
using detail::sock_name;
using detail::throw_errno;
}  // namespace

// ---- TcpStream --------------------------------------------------------------------

TcpStream TcpStream::connect(const SocketAddress& addr, TimeLimit timeout) {
  TcpStream s;
  s.src_ = detail::connect_source(addr, SOCK_STREAM, detail::deadline_of(timeout));
  return s;
}

TcpStream TcpStream::connect(std::string_view host, uint16_t port, TimeLimit timeout) {
  const int64_t dl = detail::deadline_of(timeout);
  const std::vector<SocketAddress> addrs = detail::resolve_until(host, port, dl);
  std::exception_ptr last;
  for (const SocketAddress& a : addrs) {
    try {
      TcpStream s;
      s.src_ = detail::connect_source(a, SOCK_STREAM, dl);
      return s;
    } catch (const std::system_error&) {
      last = std::current_exception();  // try the next address
    }
  }
  if (last) std::rethrow_exception(last);
  throw std::system_error(EHOSTUNREACH, std::generic_category(), "connect: no address for " + std::string(host));
}

void TcpStream::set_nodelay(bool on) {
  const int v = on ? 1 : 0;
  if (::setsockopt(src_.get("setsockopt(TCP_NODELAY)")->fd(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0)
    throw_errno(errno, "setsockopt(TCP_NODELAY)");
}

SocketAddress TcpStream::local_address() const {
  return sock_name(src_.get("getsockname")->fd(), false, "getsockname");
}

SocketAddress TcpStream::peer_address() const { return sock_name(src_.get("getpeername")->fd(), true, "getpeername"); }

// ---- TcpListener ------------------------------------------------------------------

TcpListener::TcpListener(std::string_view host, uint16_t port, ListenOptions opts) {
  const std::vector<SocketAddress> addrs =
      host.empty() ? std::vector<SocketAddress>{SocketAddress::parse("0.0.0.0", port)} : resolve(host, port);
  std::exception_ptr last;
  for (const SocketAddress& a : addrs) {
    try {
      open(a, opts);
      return;
    } catch (const std::system_error&) {
      last = std::current_exception();
    }
  }
  if (last) std::rethrow_exception(last);
  throw std::system_error(EADDRNOTAVAIL, std::generic_category(), "bind: no address for " + std::string(host));
}

TcpListener::TcpListener(const SocketAddress& addr, ListenOptions opts) { open(addr, opts); }

void TcpListener::open(const SocketAddress& a, const ListenOptions& opts) {
  const int fd = ::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "socket");
  auto fail = [fd](const char* what) {
    const int e = errno;
    ::close(fd);
    throw_errno(e, what);
  };
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) fail("setsockopt(SO_REUSEADDR)");
  if (opts.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    fail("setsockopt(SO_REUSEPORT)");
  if (a.family() == AF_INET6) {
    const int v6 = opts.v6_only ? 1 : 0;
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) != 0) fail("setsockopt(IPV6_V6ONLY)");
  }
  if (::bind(fd, a.data(), a.size()) != 0) fail("bind");
  if (::listen(fd, opts.backlog) != 0) fail("listen");
  src_ = detail::FdHandle::adopt(fd);  // closes a socket this listener held before
}

SocketAddress TcpListener::local_address() const {
  return sock_name(src_.get("getsockname")->fd(), false, "getsockname");
}

TcpStream TcpListener::accept(SocketAddress* peer, TimeLimit timeout) {
  detail::FdSource* l = src_.get("accept");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int fd = detail::accept_fd(l, &ss, &len, detail::deadline_of(timeout));
  if (peer) *peer = SocketAddress(reinterpret_cast<sockaddr*>(&ss), len);
  TcpStream s;
  s.src_ = detail::FdHandle::adopt(fd);  // accept4 made it non-blocking and close-on-exec
  return s;
}

}  // namespace spindle
