// Names given to the I/O module: hosts and paths with an embedded NUL are refused (not
// cut short), resolver failures are GaiError with the resolver's own code, IPv6 zones
// survive to_string, a UnixListener removes only the socket file it made, and a
// truncated UDP datagram says so. Loopback only; no test needs the network.
#include <net/if.h>
#include <netdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using namespace std::string_view_literals;

namespace {
std::string temp_path(const char* tag) {
  return "/tmp/spindle-names-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}
bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}
}  // namespace

TEST_CASE("A host or path with an embedded NUL is refused, naming it", "[io][names]") {
  const unsigned workers = SPINDLE_WORKERS();
  test::FdLeakCheck fdc;
  test::QuietRuntime q(workers);
  q.rt.block_on([&] {
    // A live listener on the address before the NUL: the old code connected to it.
    TcpListener l("127.0.0.1", 0);
    const uint16_t port = l.port();
    const std::string_view numeric = "127.0.0.1\0.evil.example"sv;
    const std::string_view name = "localhost\0.evil.example"sv;
    CHECK_THROWS_WITH(resolve(numeric, port), Catch::Contains("NUL") && Catch::Contains("127.0.0.1\\0.evil.example"));
    CHECK_THROWS_AS(resolve(name, port), std::invalid_argument);
    CHECK_THROWS_AS(TcpStream::connect(numeric, port, 5s), std::invalid_argument);
    CHECK_THROWS_AS(open_connection(name, port, 5s), std::invalid_argument);
    CHECK_THROWS_AS(TcpListener(numeric, 0), std::invalid_argument);
    CHECK_THROWS_AS(UdpSocket::bind(numeric, 0), std::invalid_argument);
    CHECK_THROWS_AS(UdpSocket::connect(numeric, port), std::invalid_argument);
    CHECK_THROWS_AS(SocketAddress::parse(numeric, port), std::invalid_argument);
    CHECK_THROWS_AS(SocketAddress::parse("[::1\0x]:80"sv), std::invalid_argument);
    CHECK_THROWS_AS(SocketAddress::parse("fe80::1%lo\0x"sv, 80), std::invalid_argument);
    CHECK_THROWS_AS(start_server([](TcpStream) {}, numeric, 0), std::invalid_argument);

    // A filesystem path: the part before the NUL is neither bound nor connected to.
    const std::string p = temp_path("nul");
    const std::string bad = p + std::string("\0x", 2);
    CHECK_THROWS_WITH(UnixListener(bad), Catch::Contains("NUL") && Catch::Contains("\\0x"));
    CHECK_FALSE(exists(p));
    UnixListener real(p);
    CHECK_THROWS_AS(UnixStream::connect(bad, 5s), std::invalid_argument);
    CHECK_THROWS_AS(SocketAddress::from_path(bad), std::invalid_argument);
  });
}

TEST_CASE("An abstract Unix name may hold a NUL: its bytes are counted", "[io][names][unix]") {
  const unsigned workers = SPINDLE_WORKERS();
  test::FdLeakCheck fdc;
  test::QuietRuntime q(workers);
  q.rt.block_on([&] {
    const std::string prefix = "@spindle-names-" + std::to_string(::getpid());
    const std::string full = prefix + std::string("\0tail", 5);
    UnixListener l(full);
    auto acc = spawn([&] { return l.accept(5s); });
    UnixStream c = UnixStream::connect(full, 5s);
    UnixStream s = acc.get();
    CHECK(c.peer_address().path() == full);
    // The name is not its prefix: nobody listens there.
    CHECK_THROWS_AS(UnixStream::connect(prefix, 5s), std::system_error);
  });
}

TEST_CASE("An unknown host name is a GaiError with the resolver's code", "[io][names][resolve]") {
  const unsigned workers = SPINDLE_WORKERS();
  test::QuietRuntime q(workers);
  q.rt.block_on([&] {
    // No query may leave the machine (tests use loopback only), so the name is one the
    // resolver refuses before asking DNS: a label of 64 characters is over DNS's limit
    // of 63, and glibc answers EAI_NONAME without sending anything (checked with strace:
    // no socket but nscd's Unix one). Under the reserved '.invalid' (RFC 6761) all the
    // same. EAI_AGAIN is accepted for a resolver that answers otherwise; the bound is
    // for one that hangs.
    const std::string host = std::string(64, 'a') + ".invalid";
    try {
      (void)wait_for([&] { return resolve(host, 80); }, 30s);
      FAIL("resolved " << host);
    } catch (const GaiError& e) {
      INFO(e.what());
      CHECK((e.code().value() == EAI_NONAME || e.code().value() == EAI_AGAIN));
      CHECK(e.code().category() == gai_category());
      CHECK(std::string(e.code().category().name()) == "getaddrinfo");
      CHECK(e.host() == host);
      CHECK(std::string(e.what()).find(host) != std::string::npos);
      CHECK(std::string(e.what()).find(::gai_strerror(e.code().value())) != std::string::npos);
    }
    // It is a std::system_error, so code catching those still does.
    CHECK_THROWS_AS(wait_for([&] { return TcpStream::connect(host, 80, 30s); }, 30s), std::system_error);
  });
}

TEST_CASE("gai_category's messages are the resolver's", "[io][names][resolve]") {
  // The mapping itself, without resolving anything: a bad numeric literal with
  // AI_NUMERICHOST fails inside getaddrinfo, before any lookup.
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo("300.1.2.3", "80", &hints, &res);
  REQUIRE(rc != 0);
  const GaiError e(rc, "300.1.2.3");
  CHECK(e.code().value() == rc);
  CHECK(e.code().message() == ::gai_strerror(rc));
  CHECK(std::string(e.what()) == std::string("getaddrinfo 300.1.2.3: ") + ::gai_strerror(rc));
  CHECK(GaiError(EAI_AGAIN, "h").code().message() == ::gai_strerror(EAI_AGAIN));
}

TEST_CASE("An IPv6 zone survives ip() and to_string()", "[io][names]") {
  // An index no interface has: printed as the number.
  const SocketAddress n = SocketAddress::parse("fe80::1%4000000", 80);
  CHECK(n.scope_id() == 4000000u);
  CHECK(n.ip() == "fe80::1%4000000");
  CHECK(n.to_string() == "[fe80::1%4000000]:80");
  const SocketAddress back = SocketAddress::parse(n.ip(), n.port());
  CHECK(back.scope_id() == n.scope_id());
  CHECK(SocketAddress::parse(n.to_string()).to_string() == n.to_string());
  // A zone that is neither an interface nor all digits is refused.
  CHECK_THROWS_AS(SocketAddress::parse("fe80::1%12abc", 80), std::invalid_argument);
  CHECK_THROWS_AS(SocketAddress::parse("fe80::1%", 80), std::invalid_argument);
  // No zone: unchanged text.
  CHECK(SocketAddress::parse("::1", 80).to_string() == "[::1]:80");
  CHECK(SocketAddress::parse("::1", 80).scope_id() == 0u);
  // An interface's name, when it has one (loopback, if this machine names it "lo").
  if (const unsigned lo = ::if_nametoindex("lo")) {
    const SocketAddress a = SocketAddress::parse("fe80::1%lo", 80);
    CHECK(a.scope_id() == lo);
    CHECK(a.to_string() == "[fe80::1%lo]:80");
    CHECK(SocketAddress::parse("fe80::1%" + std::to_string(lo), 80).ip() == "fe80::1%lo");
  }
}

TEST_CASE("UnixListener::close removes only the socket file it made", "[io][names][unix]") {
  const unsigned workers = SPINDLE_WORKERS();
  test::FdLeakCheck fdc;
  test::QuietRuntime q(workers);
  q.rt.block_on([&] {
    const std::string p = temp_path("replace");
    UnixListener first(p);
    UnixListener second(p);  // removes first's file as stale, binds its own
    first.close();           // must leave second's file alone
    REQUIRE(exists(p));
    auto acc = spawn([&] { return second.accept(5s); });
    UnixStream c = UnixStream::connect(p, 5s);  // ENOENT on the old code
    UnixStream s = acc.get();
    c.write_all("x", 1);
    char b;
    CHECK(s.read(&b, 1) == 1);
    // Moved, the listener still knows its file; closing removes it.
    UnixListener moved(std::move(second));
    moved.close();
    CHECK_FALSE(exists(p));
    // A listener whose file is gone (removed by someone) closes quietly.
    UnixListener third(p);
    REQUIRE(::unlink(p.c_str()) == 0);
    third.close();
    CHECK_FALSE(exists(p));
  });
}

TEST_CASE("UDP: a datagram larger than the buffer is reported truncated", "[io][names][udp]") {
  const unsigned workers = SPINDLE_WORKERS();
  const char* host = GENERATE("127.0.0.1", "::1");
  test::FdLeakCheck fdc;
  test::QuietRuntime q(workers);
  q.rt.block_on([&] {
    UdpSocket server = UdpSocket::bind(host, 0);
    UdpSocket client = UdpSocket::connect(host, server.local_address().port());
    const std::string big(100, 'b');
    client.send(big);
    char buf[10];
    SocketAddress from;
    const RecvResult r = server.recv_from(buf, sizeof buf, &from, 5s);
    CHECK(r.size == sizeof buf);
    CHECK(r.datagram_size == big.size());
    CHECK(r.truncated);
    CHECK(std::string(buf, r) == big.substr(0, sizeof buf));
    CHECK(from.port() == client.local_address().port());
    // A datagram that fits: not truncated; the result still reads as a size.
    client.send("small");
    const std::size_t n = server.recv(buf, sizeof buf, 5s);
    CHECK(n == 5);
    client.send("exact-fit!");
    const RecvResult e = server.recv(buf, sizeof buf, 5s);
    CHECK(e.size == 10);
    CHECK(e.datagram_size == 10);
    CHECK_FALSE(e.truncated);
  });
}
