// Socket addresses and name resolution (loop.getaddrinfo).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spindle {

/// An IPv4 or IPv6 address and port (a sockaddr_in / sockaddr_in6), or a Unix socket path.
class SocketAddress {
 public:
  SocketAddress() noexcept = default;
  /// Copies a sockaddr. Throws std::invalid_argument if len is too large.
  SocketAddress(const sockaddr* sa, socklen_t len);
  /// Parses a numeric IPv4 ("127.0.0.1") or IPv6 ("::1", "[::1]", "fe80::1%lo") address.
  /// Throws std::invalid_argument naming `ip` if it is not one.
  static SocketAddress parse(std::string_view ip, uint16_t port);
  /// Parses "host:port", "[v6]:port" (numeric hosts only). Throws std::invalid_argument.
  static SocketAddress parse(std::string_view host_port);
  /// A Unix socket address; a leading '@' names one in the abstract namespace. Throws
  /// std::invalid_argument if the path is empty or too long (108 bytes).
  static SocketAddress from_path(std::string_view path);

  int family() const noexcept { return ss_.ss_family; }  ///< AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC
  std::string ip() const;                                ///< "127.0.0.1", "::1" ("" if not IP)
  uint16_t port() const noexcept;                        ///< 0 if not IP
  std::string to_string() const;                         ///< "127.0.0.1:80", "[::1]:80", "unix:/p"
  std::string path() const;                              ///< a Unix socket's path ("@name" if abstract)
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&ss_); }
  socklen_t size() const noexcept { return len_; }

 private:
  sockaddr_storage ss_{};
  socklen_t len_ = 0;
};

/// loop.getaddrinfo: the addresses of host (name or numeric) for a TCP port, IPv4 and
/// IPv6, in the resolver's order. Numeric addresses and "localhost" (127.0.0.1, ::1)
/// are answered at once; names are looked up with getaddrinfo on a helper thread while
/// the calling fibre is suspended (the loop keeps running). Throws std::invalid_argument
/// for an empty host, std::system_error(EAI code, "getaddrinfo <host>") when lookup
/// fails, CancelledError if the calling task is cancelled meanwhile. Any thread.
std::vector<SocketAddress> resolve(std::string_view host, uint16_t port);

/// Parses a decimal port ("8080"). Throws std::invalid_argument naming it if it is not
/// a number in 0..65535.
uint16_t parse_port(std::string_view port);

}  // namespace spindle
