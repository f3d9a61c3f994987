// SocketAddress and resolve(): numeric parsing inline, names through getaddrinfo on a
// helper thread (until the blocking pool of the executors module exists).
#include <spindle/io/address.hpp>

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <spindle/detail/waiting_core.hpp>
#include <spindle/future.hpp>
#include <spindle/io/errors.hpp>

#include "syscall.hpp"

namespace spindle {

SocketAddress::SocketAddress(const sockaddr* sa, socklen_t len) {
  if (len > sizeof ss_) throw std::invalid_argument("SocketAddress: sockaddr too large");
  std::memcpy(&ss_, sa, len);
  len_ = len;
}

namespace {
// `s` with its control bytes escaped (\0, \x01...): a message that names a bad host
// or path must show the NUL that made it bad, and what() would stop at a raw one.
std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u == 0) {
      out += "\\0";
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

// Host names and filesystem paths go to C functions (getaddrinfo, inet_pton, bind's
// sun_path) that stop at the first NUL: "example.com\0.evil" would silently be
// "example.com". Such a string is refused instead.
void check_no_nul(std::string_view s, const char* what) {
  if (s.find('\0') != std::string_view::npos)
    throw std::invalid_argument(std::string(what) + " holds a NUL byte: '" + printable(s) + "'");
}

bool parse_numeric(std::string_view ip, uint16_t port, sockaddr_storage& ss, socklen_t& len) {
  if (ip.find('\0') != std::string_view::npos) return false;  // inet_pton would stop there
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  if (ip.empty() || ip.size() >= 64) return false;
  char buf[64];
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = 0;
  std::memset(&ss, 0, sizeof ss);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  if (::inet_pton(AF_INET, buf, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  char* pct = std::strchr(buf, '%');  // a zone: fe80::1%eth0
  if (pct) *pct = 0;
  if (::inet_pton(AF_INET6, buf, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    if (pct) {
      unsigned idx = ::if_nametoindex(pct + 1);
      if (idx == 0) {  // not an interface name: a numeric zone ("fe80::1%2"), all digits
        const char* end = pct + 1 + std::strlen(pct + 1);
        auto r = std::from_chars(pct + 1, end, idx);
        if (r.ec != std::errc() || r.ptr != end) return false;
      }
      v6->sin6_scope_id = idx;
    }
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}
}  // namespace

SocketAddress SocketAddress::parse(std::string_view ip, uint16_t port) {
  check_no_nul(ip, "SocketAddress::parse: address");
  SocketAddress a;
  if (!parse_numeric(ip, port, a.ss_, a.len_))
    throw std::invalid_argument("not a numeric IP address: '" + printable(ip) + "'");
  return a;
}

SocketAddress SocketAddress::parse(std::string_view hp) {
  const auto colon = hp.rfind(':');
  if (colon == std::string_view::npos) throw std::invalid_argument("no port in address: '" + printable(hp) + "'");
  std::string_view host = hp.substr(0, colon);
  if (host.find(':') != std::string_view::npos && !(host.size() >= 2 && host.front() == '[' && host.back() == ']'))
    throw std::invalid_argument("IPv6 address needs brackets: '" + printable(hp) + "'");
  return parse(host, parse_port(hp.substr(colon + 1)));
}

SocketAddress SocketAddress::from_path(std::string_view path) {
  sockaddr_un un{};
  if (path.empty() || path.size() >= sizeof un.sun_path)
    throw std::invalid_argument("bad Unix socket path: '" + printable(path) + "'");
  // A filesystem path is a C string to the kernel; an abstract name ('@...') is counted
  // bytes, so a NUL inside one is part of the name and allowed.
  if (path[0] != '@') check_no_nul(path, "Unix socket path");
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  socklen_t len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  if (path[0] == '@') {  // abstract: a leading NUL, and the length counts no terminator
    un.sun_path[0] = 0;
    len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size());
  }
  return SocketAddress(reinterpret_cast<sockaddr*>(&un), len);
}

std::string SocketAddress::path() const {
  if (ss_.ss_family != AF_UNIX) return {};
  const std::string s = to_string();
  return s.substr(5);  // after "unix:"
}

uint16_t parse_port(std::string_view p) {
  unsigned v = 0;
  auto r = std::from_chars(p.data(), p.data() + p.size(), v);
  if (p.empty() || r.ec != std::errc() || r.ptr != p.data() + p.size() || v > 65535)
    throw std::invalid_argument("not a port number: '" + printable(p) + "'");
  return uint16_t(v);
}

std::string SocketAddress::ip() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss_.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr, buf, sizeof buf);
  } else if (ss_.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss_);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    if (v6->sin6_scope_id != 0) {
      // The zone is part of a link-local address ("fe80::1%lo"): without it the text
      // names no usable address, and parse() would not give this one back. The
      // interface's name if it still exists, else its index (parse takes both).
      char name[IF_NAMESIZE] = {};
      if (::if_indextoname(v6->sin6_scope_id, name)) return std::string(buf) + "%" + name;
      return std::string(buf) + "%" + std::to_string(v6->sin6_scope_id);
    }
  }
  return buf;
}

uint32_t SocketAddress::scope_id() const noexcept {
  if (ss_.ss_family != AF_INET6) return 0;
  return reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_scope_id;
}

uint16_t SocketAddress::port() const noexcept {
  if (ss_.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
  if (ss_.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  return 0;
}

std::string SocketAddress::to_string() const {
  if (ss_.ss_family == AF_INET) return ip() + ":" + std::to_string(port());
  if (ss_.ss_family == AF_INET6) return "[" + ip() + "]:" + std::to_string(port());
  if (ss_.ss_family == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&ss_);
    const std::size_t n = len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
    if (n == 0) return "unix:(unnamed)";
    if (un->sun_path[0] == 0) return "unix:@" + std::string(un->sun_path + 1, n - 1);
    return "unix:" + std::string(un->sun_path, strnlen(un->sun_path, n));
  }
  return "(none)";
}

namespace {
std::vector<SocketAddress> lookup(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc == EAI_SYSTEM) throw std::system_error(errno, std::generic_category(), "getaddrinfo " + host);
  // EAI codes are not errno values: the resolver's own code, in a category of its own.
  if (rc != 0) throw GaiError(rc, host);
  std::vector<SocketAddress> out;
  for (addrinfo* p = res; p; p = p->ai_next) out.emplace_back(p->ai_addr, p->ai_addrlen);
  ::freeaddrinfo(res);
  return out;
}
}  // namespace

std::vector<SocketAddress> resolve(std::string_view host, uint16_t port) {
  return detail::resolve_until(host, port, 0);
}

std::vector<SocketAddress> detail::resolve_until(std::string_view host, uint16_t port, int64_t deadline_ns) {
  if (host.empty()) throw std::invalid_argument("resolve: empty host name");
  check_no_nul(host, "resolve: host name");
  SocketAddress a;
  std::vector<SocketAddress> out;
  sockaddr_storage ss;
  socklen_t len;
  if (parse_numeric(host, port, ss, len)) {
    out.emplace_back(reinterpret_cast<sockaddr*>(&ss), len);
    return out;
  }
  if (host == "localhost") {
    out.push_back(SocketAddress::parse("127.0.0.1", port));
    out.push_back(SocketAddress::parse("::1", port));
    return out;
  }
  // A name: getaddrinfo blocks, so it runs on a thread of its own while this fibre
  // waits on a Future (the thread owns a copy of the future; a cancelled waiter
  // cancels it, and the thread's late set_result is then ignored).
  Future<std::vector<SocketAddress>> fut;
  std::thread([fut, h = std::string(host), port]() mutable {
    try {
      auto v = lookup(h, port);
      try {
        fut.set_result(std::move(v));
      } catch (const InvalidStateError&) {
      }
    } catch (...) {
      try {
        fut.set_exception(std::current_exception());
      } catch (const InvalidStateError&) {
      }
    }
  }).detach();
  if (deadline_ns == 0) return fut.get();
  // At the deadline the future is cancelled (the thread's late result is then dropped).
  try {
    wait_for_core(fut.core_ptr(), deadline_ns, std::source_location::current());
  } catch (const TimeoutError&) {
    throw TimeoutError("resolve(" + std::string(host) + "): timed out");
  }
  return fut.result();
}

namespace {
class GaiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  // gai_strerror returns static text (glibc: a table, or "Unknown error") and is
  // thread-safe, unlike strerror.
  std::string message(int ev) const override { return ::gai_strerror(ev); }
};
}  // namespace

const std::error_category& gai_category() noexcept {
  static const GaiCategory c;
  return c;
}

}  // namespace spindle
