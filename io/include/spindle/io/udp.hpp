// UdpSocket: datagrams over IPv4 / IPv6 (asyncio's datagram endpoints, as plain calls).
//
// Thread rules as for SocketStream: one fibre may receive and one send at a time;
// close() wakes a blocked fibre with EBADF. Cancelling a fibre blocked in a receive
// loses no datagram.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <spindle/io/address.hpp>
#include <spindle/io/fd_handle.hpp>
#include <spindle/time_limit.hpp>

namespace spindle {

/// What recv_from / recv received. Converts to the number of bytes stored, so code
/// written for a plain size (`std::size_t n = u.recv(...)`) keeps working.
struct RecvResult {
  std::size_t size = 0;                                   ///< bytes stored in the buffer (at most its size)
  std::size_t datagram_size = 0;                          ///< the datagram's full size, as sent
  bool truncated = false;                                 ///< the datagram did not fit: its tail was discarded
  operator std::size_t() const noexcept { return size; }  // NOLINT: implicit by design
};

class UdpSocket {
 public:
  UdpSocket() noexcept = default;
  /// A socket bound to host:port (port 0: any). Throws std::system_error,
  /// std::invalid_argument.
  static UdpSocket bind(std::string_view host, uint16_t port, bool reuse_port = false);
  /// A socket connected to host:port (send/recv then talk to it only).
  static UdpSocket connect(std::string_view host, uint16_t port);
  UdpSocket(UdpSocket&& o) noexcept = default;
  /// Closes this socket first, then takes o's.
  UdpSocket& operator=(UdpSocket&& o) noexcept = default;
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;
  ~UdpSocket() = default;  // closes

  /// Sends one datagram; returns its size. Throws std::system_error (EMSGSIZE...),
  /// CancelledError.
  std::size_t send_to(const void* buf, std::size_t n, const SocketAddress& to);
  std::size_t send_to(std::string_view s, const SocketAddress& to) { return send_to(s.data(), s.size(), to); }
  /// Receives one datagram; `from` gets the sender. A datagram larger than n is
  /// truncated to n bytes (its tail is lost, as with recvfrom(2)), and the result says
  /// so: `truncated`, with the full `datagram_size`. Throws std::invalid_argument if
  /// n == 0, std::system_error, CancelledError, TimeoutError after timeout (none by
  /// default; zero or negative: only a datagram already queued is taken).
  RecvResult recv_from(void* buf, std::size_t n, SocketAddress* from = nullptr, TimeLimit timeout = {});
  /// On a connected socket.
  std::size_t send(const void* buf, std::size_t n);
  std::size_t send(std::string_view s) { return send(s.data(), s.size()); }
  RecvResult recv(void* buf, std::size_t n, TimeLimit timeout = {}) { return recv_from(buf, n, nullptr, timeout); }

  SocketAddress local_address() const;
  /// Closes the socket. Idempotent, never throws.
  void close() noexcept { (void)src_.close(); }
  bool is_open() const noexcept { return src_.is_open(); }
  int native_handle() const noexcept { return src_.fd(); }

 private:
  detail::FdHandle src_;
};

}  // namespace spindle
