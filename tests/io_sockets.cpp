// UDP and Unix domain sockets over worker counts: round trips, abstract and path
// addresses, socketpair, cancellation of a blocked receive, timeouts, and no fd leak.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include <spindle/io/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using test::FdLeakCheck;

TEST_CASE("UDP round trip over IPv4 and IPv6", "[io][udp]") {
  const unsigned workers = SPINDLE_WORKERS();
  const char* host = GENERATE("127.0.0.1", "::1");
  FdLeakCheck fdc;
  Runtime rt(test::opts(workers));
  rt.block_on([&] {
    UdpSocket server = UdpSocket::bind(host, 0);
    const uint16_t port = server.local_address().port();
    auto echo = spawn([&] {
      char buf[2048];
      for (int i = 0; i < 100; ++i) {
        SocketAddress from;
        const std::size_t n = server.recv_from(buf, sizeof buf, &from);
        server.send_to(buf, n, from);
      }
    });
    UdpSocket client = UdpSocket::connect(host, port);
    int good = 0;
    for (int i = 0; i < 100; ++i) {
      const std::string msg = "datagram " + std::to_string(i);
      client.send(msg);
      char buf[2048];
      // Loopback does not drop, but do not hang forever if it did.
      const std::size_t n = client.recv(buf, sizeof buf, 2s);
      good += std::string(buf, n) == msg;
    }
    echo.get();
    CHECK(good == 100);
  });
}

TEST_CASE("UDP: a cancelled receive loses no datagram; timeouts", "[io][udp][cancel]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  Runtime rt(test::opts(workers));
  rt.block_on([] {
    UdpSocket a = UdpSocket::bind("127.0.0.1", 0);
    UdpSocket b = UdpSocket::bind("127.0.0.1", 0);
    char buf[64];
    CHECK_THROWS_AS(a.recv(buf, sizeof buf, 10ms), TimeoutError);
    CHECK_THROWS_AS(a.recv(buf, 0), std::invalid_argument);
    auto r = spawn([&] {
      char b2[64];
      return a.recv(b2, sizeof b2);
    });
    sleep(5ms);
    r.cancel();
    CHECK_THROWS_AS(r.get(), CancelledError);
    b.send_to("after", a.local_address());
    SocketAddress from;
    const std::size_t n = a.recv_from(buf, sizeof buf, &from, 2s);
    CHECK(std::string(buf, n) == "after");
    CHECK(from.port() == b.local_address().port());
  });
}

TEST_CASE("Unix stream sockets: path and abstract addresses, echo", "[io][unix]") {
  const unsigned workers = SPINDLE_WORKERS();
  const bool abstract = GENERATE(false, true);
  FdLeakCheck fdc;
  const std::string path = abstract ? "@spindle-test-" + std::to_string(::getpid()) + "-" + std::to_string(workers)
                                    : "/tmp/spindle-test-" + std::to_string(::getpid()) + ".sock";
  Runtime rt(test::opts(workers));
  rt.block_on([&] {
    UnixListener l(path);
    auto server = spawn([&] {
      std::vector<Task<>> conns;
      for (int i = 0; i < 8; ++i) {
        conns.push_back(spawn([s = l.accept()]() mutable {
          while (true) {
            std::string line = s.read_line();
            if (line.empty()) return;
            s.write_all(line);
          }
        }));
      }
      for (auto& c : conns) c.get();
    });
    std::atomic<int> good{0};
    std::vector<Task<>> clients;
    for (int c = 0; c < 8; ++c) {
      clients.push_back(spawn([&, c] {
        UnixStream s = UnixStream::connect(path);
        bool ok = true;
        for (int i = 0; i < 20; ++i) {
          const std::string msg = std::to_string(c) + ":" + std::to_string(i) + "\n";
          s.write_all(msg);
          ok = ok && s.read_line() == msg;
        }
        if (ok) ++good;
      }));
    }
    for (auto& t : clients) t.get();
    server.get();
    CHECK(good == 8);
    CHECK(l.path() == path);
    l.close();
    struct stat st;
    CHECK(::stat(path.c_str(), &st) != 0);  // the file is gone (never existed if abstract)
    CHECK_THROWS_AS(UnixStream::connect(path), std::system_error);
  });
}

TEST_CASE("socketpair streams: full duplex, half-close and cancel", "[io][unix][cancel]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  Runtime rt(test::opts(workers));
  rt.block_on([] {
    auto [a, b] = UnixStream::pair();
    auto reader = spawn([&] { return b.read_exact(4); });
    sleep(5ms);
    reader.cancel();
    CHECK_THROWS_AS(reader.get(), CancelledError);
    constexpr std::size_t kBytes = 4u << 20;
    auto writer = spawn([&] {
      const std::string chunk(64 * 1024, 'u');
      for (std::size_t sent = 0; sent < kBytes; sent += chunk.size()) a.write_all(chunk);
      a.shutdown_write();
    });
    std::size_t got = 0;
    char buf[10000];
    while (std::size_t n = b.read(buf, sizeof buf)) got += n;
    writer.get();
    CHECK(got == kBytes);
    b.write_all("bye");
    b.close();
    CHECK(a.read_exact(3) == "bye");
    CHECK(a.read(3).empty());
  });
}
