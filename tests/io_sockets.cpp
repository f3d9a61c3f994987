// UDP and Unix domain sockets over worker counts: round trips, abstract and path
// addresses, socketpair, cancellation of a blocked receive, timeouts, no fd leak, and
// the events of a stuck loop's fds taken by another loop.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using test::FdLeakCheck;

TEST_CASE("UDP round trip over IPv4 and IPv6", "[io][udp]") {
  const unsigned workers = SPINDLE_WORKERS();
  const char* host = GENERATE("127.0.0.1", "::1");
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
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
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
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
    test::until_suspended(r);  // it waits now
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
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
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
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto [a, b] = UnixStream::pair();
    auto reader = spawn([&] { return b.read_exact(4); });
    test::until_suspended(reader);  // it waits now
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

TEST_CASE("a loop whose thread is stuck does not hold back the events of its fds", "[io][steal]") {
  // The reader's fd is registered with loop 0's epoll; then loop 0's thread is blocked
  // (as if the OS had preempted it) until the reader has run. Loop 1 must take the
  // event from loop 0's epoll and run the reader; otherwise the blocker gives up after
  // 10 s and the test fails.
  FdLeakCheck fdc;
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  auto [a, b] = UnixStream::pair();
  // Register a's fd with loop 0: a pinned task's read there times out.
  rt.spawn(TaskOptions{.pinned = true, .loop = 0}, [&a] {
      a.set_timeout(1ms);
      char c;
      CHECK_THROWS_AS(a.read(&c, 1), TimeoutError);
      a.set_timeout(std::chrono::nanoseconds(0));
    }).get();
  std::atomic<bool> reader_done{false};
  auto reader = rt.spawn([&] {
    char buf[16];
    const std::size_t n = a.read(buf, sizeof buf);
    reader_done = true;
    return std::string(buf, n);
  });
  std::atomic<bool> blocking{false};
  auto blocker = rt.spawn(TaskOptions{.pinned = true, .loop = 0}, [&] {
    blocking = true;
    // Blocks the loop's thread, not just this fibre.
    const auto cap = std::chrono::steady_clock::now() + 10s;
    while (!reader_done && std::chrono::steady_clock::now() < cap) std::this_thread::sleep_for(1ms);
    return reader_done.load();
  });
  while (!blocking) std::this_thread::sleep_for(1ms);
  rt.spawn([&b] { b.write_all(std::string_view("ping")); }).get();
  CHECK(blocker.get());  // the reader ran while loop 0 was stuck
  CHECK(reader.get() == "ping");
}
