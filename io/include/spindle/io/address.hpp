// Socket addresses and name resolution (loop.getaddrinfo).
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io/errors.hpp>

namespace spindle {

/// An IPv4 or IPv6 address and port (a sockaddr_in / sockaddr_in6), or a Unix socket path.
class SocketAddress {
 public:
  SocketAddress() noexcept = default;
  /// Copies a sockaddr. Throws std::invalid_argument if len is too large.
  SocketAddress(const sockaddr* sa, socklen_t len);
  /// Parses a numeric IPv4 ("127.0.0.1") or IPv6 ("::1", "[::1]", "fe80::1%lo") address;
  /// an IPv6 zone is an interface name or a decimal index. Throws std::invalid_argument
  /// naming `ip` if it is not one (a NUL byte anywhere in it included).
  static SocketAddress parse(std::string_view ip, uint16_t port);
  /// Parses "host:port", "[v6]:port" (numeric hosts only). Throws std::invalid_argument.
  static SocketAddress parse(std::string_view host_port);
  /// A Unix socket address; a leading '@' names one in the abstract namespace. Throws
  /// std::invalid_argument if the path is empty, too long (108 bytes) or, for a
  /// filesystem path, holds a NUL byte (an abstract name may: its bytes are counted).
  static SocketAddress from_path(std::string_view path);

  int family() const noexcept { return ss_.ss_family; }  ///< AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC
  /// "127.0.0.1", "::1", "fe80::1%lo" (an IPv6 zone as its interface's name, or its
  /// index if no interface has it now); "" if not IP. parse(ip(), port()) gives the
  /// address back.
  std::string ip() const;
  uint16_t port() const noexcept;      ///< 0 if not IP
  uint32_t scope_id() const noexcept;  ///< an IPv6 zone's index (0: none)
  std::string to_string() const;       ///< "127.0.0.1:80", "[fe80::1%lo]:80", "unix:/p"
  std::string path() const;            ///< a Unix socket's path ("@name" if abstract)
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
/// naming the host for an empty one or one holding a NUL byte (never looked up as what
/// precedes the NUL); GaiError (socket.gaierror: the resolver's EAI_* code, e.g.
/// EAI_NONAME for an unknown name) when lookup fails; std::system_error(errno) for
/// EAI_SYSTEM; CancelledError if the calling task is cancelled meanwhile. Any thread.
std::vector<SocketAddress> resolve(std::string_view host, uint16_t port);

/// Parses a decimal port ("8080"). Throws std::invalid_argument naming it if it is not
/// a number in 0..65535.
uint16_t parse_port(std::string_view port);

}  // namespace spindle
