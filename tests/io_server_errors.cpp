// A server whose accept loop fails stops visibly: is_serving() false, every listener
// closed, serve_forever() and wait_closed() rethrowing the error, and no "never
// retrieved" report for it. Loopback only.
//
// The accept error is made real: shutdown(2) on a listening TCP socket makes accept(2)
// fail with EINVAL (and wakes the epoll wait), so the test reaches into /proc/self/fd
// for the server's listener.
#include <dirent.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

// The listening TCP sockets of this process bound to `port`.
std::vector<int> listeners_on(uint16_t port) {
  std::vector<int> out;
  DIR* d = ::opendir("/proc/self/fd");
  REQUIRE(d);
  while (dirent* e = ::readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == ::dirfd(d)) continue;
    int listening = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage ss{};
    len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;
    const SocketAddress a(reinterpret_cast<sockaddr*>(&ss), len);
    if (a.family() == AF_INET && a.port() == port) out.push_back(fd);
  }
  ::closedir(d);
  return out;
}

void echo_once(TcpStream s) {
  char buf[16];
  const std::size_t n = s.read(buf, sizeof buf);
  s.write_all(buf, n);
}

// Connects and checks one echo: the server is really accepting.
void check_served(uint16_t port) {
  TcpStream c = TcpStream::connect("127.0.0.1", port, 5s);
  c.write_all("hi", 2);
  char buf[2];
  c.read_exact(buf, 2);
  CHECK(std::string(buf, 2) == "hi");
}

}  // namespace

TEST_CASE("Server: an on_accept_error that throws stops the server visibly", "[io][tcp][server]") {
  const unsigned workers = SPINDLE_WORKERS();
  const bool reuse_port = GENERATE(false, true);
  test::FdLeakCheck fdc;
  test::QuietRuntime q(workers);  // fails on a "Task exception was never retrieved"
  q.rt.block_on([&] {
    std::atomic<int> calls{0}, code{0};
    ServerOptions o{.reuse_port = reuse_port};
    o.on_accept_error = [&](const std::system_error& e) {
      code = e.code().value();  // checked below: Catch's CHECK is not for the accept task's thread
      ++calls;
      throw std::runtime_error("on_accept_error gave up");
    };
    Server srv = start_server(echo_once, "127.0.0.1", 0, o);
    const uint16_t port = srv.port();
    check_served(port);
    REQUIRE(srv.is_serving());

    // Break one listener (of workers, with reuse_port): its loop fails, the server stops.
    const std::vector<int> fds = listeners_on(port);
    REQUIRE(fds.size() == (reuse_port ? workers : 1u));
    REQUIRE(::shutdown(fds[0], SHUT_RDWR) == 0);

    // Bounded: on the old code serve_forever waited for ever (TimeoutError here).
    CHECK_THROWS_WITH(wait_for([&] { srv.serve_forever(); }, 10s), "on_accept_error gave up");
    CHECK_FALSE(srv.is_serving());
    // Each waiter gets the error, wait_closed after every listener is closed.
    CHECK_THROWS_WITH(wait_for([&] { srv.wait_closed(); }, 10s), "on_accept_error gave up");
    CHECK_THROWS_WITH(srv.serve_forever(), "on_accept_error gave up");
    CHECK(calls.load() == 1);
    CHECK(code.load() == EINVAL);
    CHECK(listeners_on(port).empty());
    try {
      TcpStream::connect("127.0.0.1", port, 5s);
      FAIL("connected to a stopped server");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ECONNREFUSED);
    }
    srv.close();  // idempotent after the stop
    CHECK_THROWS_WITH(srv.wait_closed(), "on_accept_error gave up");
  });
}

TEST_CASE("Server: an accept error the callback absorbs keeps the server serving", "[io][tcp][server]") {
  const unsigned workers = SPINDLE_WORKERS();
  test::FdLeakCheck fdc;
  test::QuietRuntime q(workers);
  q.rt.block_on([&] {
    std::atomic<int> calls{0};
    ServerOptions o{.reuse_port = true, .accept_backoff = 1ms};
    o.on_accept_error = [&](const std::system_error&) { ++calls; };
    Server srv = start_server(echo_once, "127.0.0.1", 0, o);
    const uint16_t port = srv.port();
    const std::vector<int> fds = listeners_on(port);
    REQUIRE(fds.size() == workers);
    if (workers > 1) {
      // One broken listener retries (and reports) while the others go on accepting.
      REQUIRE(::shutdown(fds[0], SHUT_RDWR) == 0);
      while (calls.load() < 2) sleep(1ms);
      CHECK(srv.is_serving());
      for (int i = 0; i < 8; ++i) check_served(port);  // the kernel skips the dead one
    }
    srv.close();
    srv.wait_closed();  // a plain close: no error
    srv.serve_forever();
    CHECK_FALSE(srv.is_serving());
  });
}
