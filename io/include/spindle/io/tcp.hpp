// TCP: TcpListener, TcpStream, and asyncio's start_server / open_connection.
//
// Every fd is non-blocking and close-on-exec. A fibre that must wait suspends on the
// epoll reactor of the loop where the fd was first waited on; threads outside the
// runtime block instead. Writes use MSG_NOSIGNAL: a vanished peer is an EPIPE or
// ECONNRESET system_error on that stream, never SIGPIPE.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <spindle/io/address.hpp>
#include <spindle/io/stream.hpp>

namespace spindle {

/// A connected TCP socket.
class TcpStream : public SocketStream {
 public:
  TcpStream() noexcept = default;
  /// Adopts a connected TCP socket fd. Throws std::system_error.
  explicit TcpStream(int fd) : SocketStream(fd) {}

  /// Connects to host:port (a name, or a numeric IPv4/IPv6 address), trying each
  /// resolved address in turn. timeout (none by default) bounds the whole attempt, name
  /// resolution included. Zero or negative connects only if that needs no wait: on
  /// loopback the kernel has usually completed the handshake when connect(2) returns,
  /// and one look finds it; a name that needs a lookup times out. Throws
  /// TimeoutError, std::system_error (ECONNREFUSED, ENETUNREACH, ...; the last
  /// address's error), std::invalid_argument for a bad address, CancelledError (the
  /// half-made socket is closed). Any fibre or thread.
  static TcpStream connect(std::string_view host, uint16_t port, TimeLimit timeout = {});
  static TcpStream connect(const SocketAddress& addr, TimeLimit timeout = {});

  /// TCP_NODELAY on or off. Throws std::system_error.
  void set_nodelay(bool on = true);
  /// getsockname / getpeername. Throw std::system_error (EBADF when closed, ENOTCONN).
  SocketAddress local_address() const;
  SocketAddress peer_address() const;

 private:
  friend class TcpListener;
};

struct ListenOptions {
  int backlog = 1024;       ///< listen(2) backlog (the kernel caps it at somaxconn)
  bool reuse_port = false;  ///< SO_REUSEPORT: several listeners on one port share the load
  bool v6_only = true;      ///< IPV6_V6ONLY for IPv6 listeners ("::" then takes IPv6 only)
};

/// A listening TCP socket. SO_REUSEADDR is always set.
///
/// Thread rules as for SocketStream: one fibre at a time may accept; close() wakes a
/// fibre blocked in accept() with EBADF. Cancelling a fibre blocked in accept() leaves
/// the listener open and usable, and no connection is lost.
class TcpListener {
 public:
  TcpListener() noexcept = default;
  /// Binds host:port and listens. host is numeric IPv4/IPv6, a name, or "" for every
  /// IPv4 interface (0.0.0.0); port 0 picks a free port (see port()). The first
  /// resolved address that binds is used. Throws std::system_error ("bind", "listen",
  /// ...), std::invalid_argument for a bad address.
  TcpListener(std::string_view host, uint16_t port, ListenOptions opts = {});
  explicit TcpListener(const SocketAddress& addr, ListenOptions opts = {});
  TcpListener(TcpListener&& o) noexcept = default;
  /// Closes this listener first, then takes o's socket.
  TcpListener& operator=(TcpListener&& o) noexcept = default;
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;
  ~TcpListener() = default;  // closes

  /// Waits for a connection and returns it (non-blocking, close-on-exec). Transient
  /// errors (ECONNABORTED, EPROTO, ...) are retried. Throws std::system_error (EMFILE /
  /// ENFILE when out of fds: the caller should back off; EBADF when closed),
  /// CancelledError, TimeoutError after `timeout` (none by default; zero or negative:
  /// only a connection already queued is taken).
  TcpStream accept(SocketAddress* peer = nullptr, TimeLimit timeout = {});
  /// Stops listening. Idempotent, never throws.
  void close() noexcept { (void)src_.close(); }
  bool is_open() const noexcept { return src_.is_open(); }
  SocketAddress local_address() const;
  uint16_t port() const { return local_address().port(); }
  int native_handle() const noexcept { return src_.fd(); }

 private:
  void open(const SocketAddress& addr, const ListenOptions& opts);
  detail::FdHandle src_;
};

/// Options of start_server.
struct ServerOptions {
  int backlog = 1024;
  /// One listener per loop (SO_REUSEPORT), each with its own accept task pinned to its
  /// loop: the kernel spreads connections over the loops. Otherwise one listener and
  /// one accept task, and connection tasks spread by work stealing.
  bool reuse_port = false;
  /// TCP_NODELAY on every accepted connection.
  bool nodelay = false;
  /// The name of each connection's task (TaskOptions::name: traces, task dumps,
  /// reports); empty: unnamed ("Task-<n>").
  std::string connection_name{};
  /// Called (in the accept task) when accept fails, e.g. EMFILE; the accept loop then
  /// sleeps accept_backoff before trying again. Default: a line on stderr. If it
  /// throws, the server stops with that exception (see Server).
  std::function<void(const std::system_error&)> on_accept_error{};
  std::chrono::milliseconds accept_backoff{100};
};

namespace detail {
struct ServerState;
}

/// A running server (asyncio.Server). Copies share it. Dropping every copy does not stop
/// it: close() does (or the runtime's shutdown). Every member may be called from any
/// fibre; the waiting ones from threads outside the runtime too.
///
/// An accept loop that fails with anything but an accept(2) error it can retry (an
/// on_accept_error that throws, std::bad_alloc, ...) stops the whole server, as close()
/// would, with that exception: is_serving() turns false, every listener closes, and
/// serve_forever() and wait_closed() rethrow it (each call does). If nobody waits, the
/// exception is reported as "Future exception was never retrieved" when the server
/// goes away.
class Server {
 public:
  Server() noexcept = default;
  explicit Server(std::shared_ptr<detail::ServerState> s) noexcept : s_(std::move(s)) {}

  /// The port listened on (useful with port 0).
  uint16_t port() const;
  /// The listening addresses.
  std::vector<SocketAddress> addresses() const;
  /// True until close(), or until an accept loop failed (see above).
  bool is_serving() const noexcept;
  /// Connections whose handler is still running.
  std::size_t connections() const noexcept;
  /// Waits until the server is closed. If the calling task is cancelled meanwhile, the
  /// server is closed and CancelledError is raised (asyncio serve_forever). Throws the
  /// exception that stopped the server, if one did.
  void serve_forever();
  /// Stops accepting: the accept tasks are cancelled and close their listeners as they
  /// end (wait_closed() waits for that). Connections being served go on. Idempotent.
  void close();
  /// Cancels every connection's handler task (asyncio close_clients / abort_clients).
  void close_clients();
  /// Waits until the server is closed, its listeners are closed and every connection
  /// handler has ended. Throws CancelledError if the caller is cancelled (the server is
  /// left alone), then the exception that stopped the server, if one did.
  void wait_closed();

 private:
  std::shared_ptr<detail::ServerState> s_;
};

/// asyncio.start_server: listens on host:port and runs handler(TcpStream) in a task of
/// its own for every connection (the stream is closed when the handler returns). An
/// exception escaping the handler is reported like any task's (never retrieved); it
/// does not stop the server. Starts accepting at once. Call from a fibre. Throws
/// std::system_error / std::invalid_argument from binding, RuntimeError outside a
/// runtime.
Server start_server(std::function<void(TcpStream)> handler, std::string_view host, uint16_t port,
                    ServerOptions opts = {});

/// asyncio.open_connection: TcpStream::connect(host, port, timeout).
inline TcpStream open_connection(std::string_view host, uint16_t port, TimeLimit timeout = {}) {
  return TcpStream::connect(host, port, timeout);
}

}  // namespace spindle
