// TCP over loopback: echo over worker counts and both address families, many
// connections, bulk transfer both ways, the buffered reads and their limits, EOF and
// half-close, cancellation in accept / read / connect, close from another fibre,
// connect errors and timeouts, peer reset, servers closed with clients connected, and
// threads outside the runtime. Every case checks that no fd leaks.
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using test::FdLeakCheck;

using test::echo_handler;

}  // namespace

TEST_CASE("echo round trips over IPv4 and IPv6", "[io][tcp]") {
  const unsigned workers = SPINDLE_WORKERS();
  const char* host = GENERATE("127.0.0.1", "::1");
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    Server srv = start_server(echo_handler, host, 0);
    REQUIRE(srv.port() != 0);
    // Catch2 assertions are not thread-safe: the clients count, the main fibre checks.
    std::atomic<int> good{0};
    std::vector<Task<>> clients;
    for (int c = 0; c < 16; ++c) {
      clients.push_back(spawn([&, c] {
        TcpStream s = open_connection(host, srv.port());
        bool ok = s.peer_address().port() == srv.port() && s.local_address().family() == s.peer_address().family();
        for (int i = 0; i < 50; ++i) {
          const std::string msg = "client " + std::to_string(c) + " message " + std::to_string(i) + "\n";
          s.write_all(msg);
          ok = ok && s.read_line() == msg;
        }
        if (ok) ++good;
      }));
    }
    for (auto& t : clients) t.get();
    CHECK(good == 16);
    srv.close();
    srv.wait_closed();
    CHECK(srv.connections() == 0);
  });
}

TEST_CASE("1000 concurrent connections, reuse_port listeners", "[io][tcp]") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  const bool reuse_port = GENERATE(false, true);
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    Server srv = start_server(echo_handler, "127.0.0.1", 0, ServerOptions{.reuse_port = reuse_port, .nodelay = true});
    constexpr int kConns = 1000;
    std::atomic<int> connected{0}, ok{0};
    std::vector<Task<>> clients;
    for (int c = 0; c < kConns; ++c) {
      clients.push_back(spawn([&, c] {
        TcpStream s = TcpStream::connect("127.0.0.1", srv.port(), 5s);
        ++connected;
        // Hold every connection open until all are made: they are truly concurrent.
        while (connected.load() < kConns) sleep(1ms);
        uint32_t v = uint32_t(c), back = 0;
        s.write_all(&v, sizeof v);
        s.read_exact(&back, sizeof back);
        if (back == v) ++ok;
      }));
    }
    for (auto& t : clients) t.get();
    CHECK(ok == kConns);
    srv.close();
    srv.wait_closed();
  });
}

TEST_CASE("16 MiB through a socket in both directions at once", "[io][tcp]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    constexpr std::size_t kBytes = 16u << 20;
    TcpListener l("127.0.0.1", 0);
    auto server = spawn([&] {
      TcpStream s = l.accept();
      // Its own writer, so that both directions flow at once.
      auto writer = spawn([&s] {
        std::vector<unsigned char> out(64 * 1024);
        for (std::size_t sent = 0; sent < kBytes; sent += out.size()) {
          for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<unsigned char>((sent + i) * 7);
          s.write_all(out.data(), out.size());
        }
        s.shutdown_write();
      });
      std::vector<unsigned char> in(50'000);
      std::size_t got = 0;
      bool same = true;
      for (;;) {
        const std::size_t n = s.read(in.data(), in.size());
        if (n == 0) break;
        for (std::size_t i = 0; i < n; ++i) same = same && in[i] == static_cast<unsigned char>((got + i) * 13);
        got += n;
      }
      writer.get();
      return same ? got : 0;
    });
    TcpStream c = TcpStream::connect("127.0.0.1", l.port());
    auto writer = spawn([&c] {
      std::vector<unsigned char> out(100'000);
      for (std::size_t sent = 0; sent < kBytes;) {
        const std::size_t n = std::min(out.size(), kBytes - sent);
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>((sent + i) * 13);
        c.write_all(out.data(), n);
        sent += n;
      }
      c.shutdown_write();
    });
    std::vector<unsigned char> in(30'000);
    std::size_t got = 0;
    bool same = true;
    for (;;) {
      const std::size_t n = c.read(in.data(), in.size());
      if (n == 0) break;
      for (std::size_t i = 0; i < n; ++i) same = same && in[i] == static_cast<unsigned char>((got + i) * 7);
      got += n;
    }
    writer.get();
    CHECK(same);
    CHECK(got == kBytes);
    CHECK(server.get() == kBytes);
  });
}

TEST_CASE("read_exact, read_until and read_line: partial reads, limits and EOF", "[io][tcp]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    TcpListener l("127.0.0.1", 0);
    auto peer = spawn([&] {
      TcpStream s = l.accept();
      // Dribble the data so that every read meets split input.
      const std::string script = "HEAD\r\n\r\nline one\nline two\n0123456789abcdefXYZ--END--tail";
      for (char ch : script) {
        s.write_all(&ch, 1);
        if (ch == '\n' || ch == 'f') sleep(1ms);
      }
      s.write_all(std::string(300, 'x'));
      s.write_all("!!\n");
      s.write_all("rest");
    });
    TcpStream c = TcpStream::connect("127.0.0.1", l.port());
    CHECK(c.read_until("\r\n\r\n") == "HEAD\r\n\r\n");
    CHECK(c.read_line() == "line one\n");
    CHECK(c.read_line() == "line two\n");
    CHECK(c.read_exact(10) == "0123456789");
    CHECK(c.read_until("--END--") == "abcdefXYZ--END--");
    CHECK(c.read_exact(4) == "tail");
    // 300 x's then "!!\n": a limit of 100 overruns and leaves the data buffered.
    try {
      (void)c.read_until("!!", 100);
      FAIL("no LimitOverrunError");
    } catch (const LimitOverrunError& e) {
      CHECK(e.consumed() > 100);
    }
    CHECK(c.read_until("!!", 1000) == std::string(300, 'x') + "!!");
    CHECK(c.read_line() == "\n");
    peer.get();  // the peer closed after "rest"
    try {
      (void)c.read_exact(10);
      FAIL("no IncompleteReadError");
    } catch (const IncompleteReadError& e) {
      CHECK(e.partial() == "rest");
      CHECK(e.expected() == 10);
    }
    char b;
    CHECK(c.read(&b, 1) == 0);     // EOF, repeatedly
    CHECK(c.read_line().empty());  // readline at EOF: ""
    CHECK_THROWS_AS(c.read(&b, 0), std::invalid_argument);
    CHECK_THROWS_AS(c.read_until(""), std::invalid_argument);
  });
}

TEST_CASE("read_until at EOF raises IncompleteReadError with what was read", "[io][tcp]") {
  FdLeakCheck fdc;
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    TcpListener l("::1", 0);
    auto peer = spawn([&] {
      TcpStream s = l.accept();
      s.write_all("no delimiter here");
    });
    TcpStream c = TcpStream::connect("::1", l.port());
    peer.get();
    try {
      (void)c.read_until("\n");
      FAIL("no IncompleteReadError");
    } catch (const IncompleteReadError& e) {
      CHECK(e.partial() == "no delimiter here");
    }
  });
}

TEST_CASE("half-close: the peer reads to EOF, then still answers", "[io][tcp]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Server srv = start_server(
        [](TcpStream s) {
          std::string all;
          char buf[100];
          while (std::size_t n = s.read(buf, sizeof buf)) all.append(buf, n);
          s.write_all("got " + std::to_string(all.size()));
        },
        "127.0.0.1", 0);
    TcpStream c = open_connection("127.0.0.1", srv.port());
    c.write_all(std::string(1000, 'a'));
    c.shutdown_write();
    CHECK(c.read(100) == "got 1000");
    CHECK(c.read(100).empty());
    srv.close();
    srv.wait_closed();
  });
}

TEST_CASE("cancelling a fibre blocked in accept leaves the listener usable", "[io][tcp][cancel]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    TcpListener l("127.0.0.1", 0);
    auto acceptor = spawn([&] { (void)l.accept(); });
    test::until_suspended(acceptor);  // it waits now
    acceptor.cancel();
    CHECK_THROWS_AS(acceptor.get(), CancelledError);
    CHECK(acceptor.cancelled());
    // Still listening, and a second fibre may now accept.
    auto again = spawn([&] { return l.accept().read(10); });
    TcpStream c = open_connection("127.0.0.1", l.port());
    c.write_all("hello");
    c.shutdown_write();
    CHECK(again.get() == "hello");
    // Cancel before the accept even starts waiting, and twice.
    auto early = spawn([&] { (void)l.accept(); });
    early.cancel();
    early.cancel();
    CHECK_THROWS_AS(early.get(), CancelledError);
  });
}

TEST_CASE("cancel in the middle of a read: no byte is lost", "[io][tcp][cancel]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    TcpListener l("127.0.0.1", 0);
    auto peer_task = spawn([&] { return l.accept(); });
    TcpStream c = open_connection("127.0.0.1", l.port());
    TcpStream p = peer_task.get();
    p.write_all("abc");
    auto reader = spawn([&] { return c.read_exact(6); });  // gets "abc", then waits
    test::until_suspended(reader);                         // it waits now
    reader.cancel();
    CHECK_THROWS_AS(reader.get(), CancelledError);
    CHECK(c.buffered() == 3);
    p.write_all("def");
    CHECK(c.read_exact(6) == "abcdef");
    // A plain read cancelled while waiting, then used again.
    auto r2 = spawn([&] {
      char b[8];
      return c.read(b, sizeof b);
    });
    test::until_suspended(r2);  // it waits now
    r2.cancel();
    CHECK_THROWS_AS(r2.get(), CancelledError);
    p.write_all("z");
    CHECK(c.read(8) == "z");
  });
}

TEST_CASE("close from another fibre wakes a blocked reader with EBADF", "[io][tcp]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    TcpListener l("127.0.0.1", 0);
    auto peer_task = spawn([&] { return l.accept(); });
    TcpStream c = open_connection("127.0.0.1", l.port());
    TcpStream p = peer_task.get();
    auto reader = spawn([&] {
      try {
        (void)c.read(10);
        return 0;
      } catch (const std::system_error& e) {
        return e.code().value();
      }
    });
    auto acc = spawn([&] {
      try {
        (void)l.accept();
        return 0;
      } catch (const std::system_error& e) {
        return e.code().value();
      }
    });
    test::until_suspended(reader);  // both wait now
    test::until_suspended(acc);
    c.close();
    l.close();
    CHECK(reader.get() == EBADF);
    CHECK(acc.get() == EBADF);
    CHECK_FALSE(c.is_open());
    CHECK_THROWS_AS(c.read(1), std::system_error);
    CHECK(p.read(10).empty());  // the peer sees EOF
  });
}

TEST_CASE("connect: refused, timed out, cancelled, bad addresses", "[io][tcp]") {
  const unsigned workers = GENERATE(1u, 2u);
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    uint16_t closed_port;
    {
      TcpListener l("127.0.0.1", 0);
      closed_port = l.port();
    }
    try {
      (void)TcpStream::connect("127.0.0.1", closed_port, 2s);
      FAIL("connected to a closed port");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ECONNREFUSED);
    }
    CHECK_THROWS_AS(TcpStream::connect("not an address!", 80), std::system_error);
    CHECK_THROWS_AS(SocketAddress::parse("1.2.3", 80), std::invalid_argument);
    CHECK_THROWS_AS(SocketAddress::parse("127.0.0.1:99999"), std::invalid_argument);
    CHECK_THROWS_AS(TcpListener("", 0).accept(nullptr, 20ms), TimeoutError);

    // A listener that never accepts, with a backlog of 0: once its queue is full the
    // kernel drops further SYNs, and connect can only time out.
    TcpListener full("127.0.0.1", 0, ListenOptions{.backlog = 0});
    std::vector<TcpStream> held;
    bool timed_out = false;
    for (int i = 0; i < 16 && !timed_out; ++i) {
      try {
        held.push_back(TcpStream::connect("127.0.0.1", full.port(), 100ms));
      } catch (const TimeoutError&) {
        timed_out = true;
      }
    }
    CHECK(timed_out);
    // The same hanging connect, cancelled: its socket is closed (FdLeakCheck).
    auto hanging = spawn([&] { (void)TcpStream::connect("127.0.0.1", full.port()); });
    test::until_suspended(hanging);  // it waits now
    hanging.cancel();
    CHECK_THROWS_AS(hanging.get(), CancelledError);
  });
}

TEST_CASE("a peer reset is an error on that stream only; no SIGPIPE", "[io][tcp]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> served{0};
    Server srv = start_server(
        [&](TcpStream s) {
          s.write_all("hi");
          try {
            char b[16];
            while (s.read(b, sizeof b)) {
            }
          } catch (const std::system_error&) {
          }
          ++served;
        },
        "127.0.0.1", 0);
    {
      TcpStream c = open_connection("127.0.0.1", srv.port());
      CHECK(c.read_exact(2) == "hi");
      const linger lg{1, 0};  // close with RST
      REQUIRE(::setsockopt(c.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    }
    // Writing to a peer that has gone: EPIPE or ECONNRESET, never a signal.
    TcpStream c2 = open_connection("127.0.0.1", srv.port());
    CHECK(c2.read_exact(2) == "hi");
    TcpListener l("127.0.0.1", 0);
    auto acc = spawn([&] { return l.accept(); });
    TcpStream w = open_connection("127.0.0.1", l.port());
    acc.get().close();
    int err = 0;
    try {
      const std::string chunk(64 * 1024, 'x');
      for (int i = 0; i < 200; ++i) w.write_all(chunk);
    } catch (const std::system_error& e) {
      err = e.code().value();
    }
    CHECK((err == EPIPE || err == ECONNRESET));
    // The server is unaffected.
    c2.write_all("x");
    c2.close();
    while (served.load() < 2) sleep(1ms);
    TcpStream c3 = open_connection("127.0.0.1", srv.port());
    CHECK(c3.read_exact(2) == "hi");
    c3.close();
    srv.close();
    srv.wait_closed();
  });
}

TEST_CASE("a server closed with clients still connected", "[io][tcp]") {
  const unsigned workers = SPINDLE_WORKERS();
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Server srv = start_server(echo_handler, "127.0.0.1", 0);
    std::vector<TcpStream> cs;
    for (int i = 0; i < 10; ++i) {
      cs.push_back(open_connection("127.0.0.1", srv.port()));
      cs.back().write_all("ping");
      CHECK(cs.back().read_exact(4) == "ping");
    }
    CHECK(srv.connections() == 10);
    auto forever = spawn([&] { srv.serve_forever(); });
    srv.close();
    forever.get();
    CHECK_FALSE(srv.is_serving());
    // Connections go on after close() ...
    cs[0].write_all("more");
    CHECK(cs[0].read_exact(4) == "more");
    // ... until close_clients() cancels their handlers; the clients then see EOF.
    auto waiter = spawn([&] { srv.wait_closed(); });
    test::until_suspended(waiter);
    CHECK_FALSE(waiter.done());
    srv.close_clients();
    waiter.get();
    CHECK(srv.connections() == 0);
    for (auto& c : cs) CHECK(c.read(10).empty());
    // The listener is closed.
    CHECK_THROWS_AS(TcpStream::connect("127.0.0.1", srv.port(), 1s), std::system_error);
  });
}

TEST_CASE("serve_forever cancelled closes the server", "[io][tcp][cancel]") {
  FdLeakCheck fdc;
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Server srv = start_server(echo_handler, "127.0.0.1", 0);
    auto t = spawn([&] { srv.serve_forever(); });
    test::until_suspended(t);  // it waits now
    t.cancel();
    CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK_FALSE(srv.is_serving());
    srv.wait_closed();
  });
}

TEST_CASE("streams used from threads outside the runtime block them", "[io][tcp]") {
  FdLeakCheck fdc;
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  Server srv = rt.block_on([] { return start_server(echo_handler, "127.0.0.1", 0); });
  int good = 0;
  std::thread th([&] {
    TcpStream c = TcpStream::connect("127.0.0.1", srv.port(), 2s);
    for (int i = 0; i < 20; ++i) {
      c.write_all("line " + std::to_string(i) + "\n");
      good += c.read_line() == "line " + std::to_string(i) + "\n";
    }
  });
  th.join();
  CHECK(good == 20);
  srv.close();
  srv.wait_closed();  // from this foreign thread
}

TEST_CASE("streams left open at shutdown are cleaned up", "[io][tcp]") {
  FdLeakCheck fdc;
  TcpStream outlives;
  {
    // The server's connection task and the stream are left to shutdown on purpose.
    test::Checked harness(2, {.live_tasks = true, .fds = true});
    Runtime& rt = harness.rt;
    rt.block_on([&] {
      Server srv = start_server(echo_handler, "127.0.0.1", 0);
      outlives = open_connection("127.0.0.1", srv.port());
      outlives.write_all("x");
      CHECK(outlives.read(1) == "x");  // registered with a reactor
      // The server and its connection task are left to the runtime's shutdown.
    });
  }
  outlives.close();  // after its runtime is gone
}

TEST_CASE("connections come and go while loops stall: other loops take their events", "[io][tcp][steal]") {
  // Every loop's thread is blocked now and then (as if preempted), so the others take
  // its ready events (Reactor::poll_foreign) while its streams are being closed and
  // freed: the sanitizer runs check that a source is never dispatched after it is gone.
  const unsigned workers = GENERATE(2u, 4u);
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    Server srv = start_server(echo_handler, "127.0.0.1", 0);
    std::atomic<bool> stop{false};
    std::vector<Task<>> stallers;
    for (unsigned l = 0; l < workers; ++l) {
      stallers.push_back(spawn(TaskOptions{.pinned = true, .loop = int(l)}, [&] {
        while (!stop) {
          std::this_thread::sleep_for(2ms);  // the loop's thread, not just this fibre
          sleep(3ms);
        }
      }));
    }
    std::atomic<int> good{0};
    std::vector<Task<>> clients;
    for (int c = 0; c < 32; ++c) {
      clients.push_back(spawn([&, c] {
        bool ok = true;
        for (int k = 0; k < 10; ++k) {  // a fresh connection each time
          TcpStream s = open_connection("127.0.0.1", srv.port());
          for (int i = 0; i < 5; ++i) {
            const std::string msg = std::to_string(c) + "/" + std::to_string(k) + "/" + std::to_string(i) + "\n";
            s.write_all(msg);
            ok = ok && s.read_line() == msg;
          }
        }
        if (ok) ++good;
      }));
    }
    for (auto& t : clients) t.get();
    stop = true;
    for (auto& t : stallers) t.get();
    CHECK(good == 32);
    srv.close();
    srv.wait_closed();
    CHECK(srv.connections() == 0);
  });
}
