// The timeout convention (TimeLimit, time_limit.hpp) on every I/O call that takes one:
// none and durations too large for the clock wait until the operation completes; zero
// and negative have already passed, so the call does what it can without waiting (bytes
// already received, a connection already queued, a datagram already there, a child
// that has ended, a signal already pending) and otherwise throws TimeoutError. Each
// case runs from a task and, for streams, from a thread outside the runtime too (whose
// waits block in poll(2) instead of suspending).
//
// SIGUSR1 is blocked before main runs (a static initialiser below), so every thread this
// program starts inherits the mask, as signals.hpp requires.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <spindle/io.hpp>

#include "io_support.hpp"
#include "support.hpp"
#include "timeout_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using test::expired;
using test::FdLeakCheck;
using test::show;
using test::unlimited;

namespace {

const bool usr1_blocked = (block_signals({SIGUSR1}), true);

// A path for a Unix socket, unique to this process and call.
std::string socket_path() {
  static int n = 0;
  return (std::filesystem::temp_directory_path() /
          ("spindle-timeouts-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".sock"))
      .string();
}

// Gives the other tasks (and the kernel) a moment before `fn`, so that a call started
// before it is really waiting when it happens.
template <class F>
Task<> after_a_while(F fn) {
  return spawn([fn]() mutable {
    for (int i = 0; i < 10; ++i) yield();
    sleep(5ms);
    fn();
  });
}

// Stream reads and writes under set_timeout(t), for an expired t. Runs in a task or on a
// foreign thread alike.
void stream_with_expired_limit(TimeLimit t) {
  auto [a, b] = UnixStream::pair();
  b.set_timeout(t);
  CHECK(b.timeout() == t);
  char buf[64];
  // Nothing there yet.
  CHECK_THROWS_AS(b.read(buf, sizeof buf), TimeoutError);
  CHECK_THROWS_AS(b.read_line(), TimeoutError);
  // What is there already is taken.
  a.write_all("line\n");
  CHECK(b.read_line() == "line\n");
  // A short read leaves the stream "drained" (the next read waits for an edge first):
  // bytes that arrived since are still found.
  a.write_all("xy");
  CHECK(b.read(buf, sizeof buf) == 2);
  a.write_all("zw");
  REQUIRE(b.read(buf, sizeof buf) == 2);
  CHECK(std::string(buf, 2) == "zw");
  // Not enough yet: TimeoutError, and what came stays buffered.
  a.write_all("ab");
  CHECK_THROWS_AS(b.read_exact(4), TimeoutError);
  a.write_all("cd");
  CHECK(b.read_exact(4) == "abcd");
  // Writes: what fits in the socket's buffer goes; more than fits times out.
  a.set_timeout(t);
  a.write_all("small");
  CHECK(b.read_exact(5) == "small");
  CHECK_THROWS_AS(a.write_all(std::string(16 << 20, 'x')), TimeoutError);
}

}  // namespace

TEST_CASE("stream calls: none and huge limits wait for the peer", "[io][timeout]") {
  FdLeakCheck fdc;
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      auto [a, b] = UnixStream::pair();
      b.set_timeout(t);
      a.set_timeout(t);
      auto writer = after_a_while([&a] { a.write_all("late\n"); });
      CHECK(b.read_line() == "late\n");
      writer.get();
      // A write larger than the socket's buffer completes once the peer reads.
      const std::string big(1 << 20, 'y');
      auto reader = spawn([&b, n = big.size()] { return b.read_exact(n); });
      a.write_all(big);
      CHECK(reader.get() == big);
    }
  });
}

TEST_CASE("stream calls: zero and negative limits take what is there, then time out", "[io][timeout]") {
  FdLeakCheck fdc;
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    for (TimeLimit t : expired()) {
      INFO("in a task, " << show(t));
      stream_with_expired_limit(t);
    }
  });
  // From a thread outside the runtime (poll(2) instead of the reactor).
  for (TimeLimit t : expired()) {
    INFO("on a foreign thread, " << show(t));
    stream_with_expired_limit(t);
  }
}

TEST_CASE("accept: none and huge wait for a client, zero and negative take one already queued", "[io][timeout]") {
  FdLeakCheck fdc;
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    TcpListener tcp("127.0.0.1", 0);
    UnixListener unix_l(socket_path());
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      auto c1 = after_a_while([&] { (void)TcpStream::connect(tcp.local_address(), 10s); });
      (void)tcp.accept(nullptr, t);
      c1.get();
      auto c2 = after_a_while([&] { (void)UnixStream::connect(unix_l.path(), 10s); });
      (void)unix_l.accept(t);
      c2.get();
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      CHECK_THROWS_AS(tcp.accept(nullptr, t), TimeoutError);
      CHECK_THROWS_AS(unix_l.accept(t), TimeoutError);
      // connect returns once the handshake is done: the connection is queued by then.
      TcpStream c = TcpStream::connect(tcp.local_address(), 10s);
      SocketAddress peer;
      TcpStream s = tcp.accept(&peer, t);
      CHECK(peer.to_string() == c.local_address().to_string());
      UnixStream uc = UnixStream::connect(unix_l.path(), 10s);
      (void)unix_l.accept(t);
    }
  });
}

TEST_CASE("connect: none and huge connect, zero and negative connect only without waiting", "[io][timeout]") {
  FdLeakCheck fdc;
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    TcpListener tcp("127.0.0.1", 0);
    UnixListener unix_l(socket_path());
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      (void)TcpStream::connect(tcp.local_address(), t);
      (void)TcpStream::connect("127.0.0.1", tcp.port(), t);
      (void)TcpStream::connect("localhost", tcp.port(), t);
      (void)open_connection("127.0.0.1", tcp.port(), t);
      (void)UnixStream::connect(unix_l.path(), t);
      for (int i = 0; i < 4; ++i) (void)tcp.accept(nullptr, 10s);
      (void)unix_l.accept(10s);
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      // AF_UNIX connects at once while the listener's queue has room.
      (void)UnixStream::connect(unix_l.path(), t);
      (void)unix_l.accept(10s);
      // TCP needs its handshake: on loopback the kernel has usually completed it by the
      // time connect(2) returns EINPROGRESS, and the one look finds it done; otherwise
      // the limit has passed. Either way nothing waits, and nothing else is thrown.
      try {
        (void)TcpStream::connect(tcp.local_address(), t);
        (void)tcp.accept(nullptr, 10s);
      } catch (const TimeoutError&) {
      }
    }
    // A listener that accepts nothing, with a backlog of 0: once its queue is full the
    // kernel drops further SYNs, and an expired connect can only time out.
    TcpListener full("127.0.0.1", 0, ListenOptions{.backlog = 0});
    std::vector<TcpStream> held;
    bool is_full = false;
    for (int i = 0; i < 16 && !is_full; ++i) {
      try {
        held.push_back(TcpStream::connect(full.local_address(), 300ms));
      } catch (const TimeoutError&) {
        is_full = true;
      }
    }
    if (!is_full) {
      WARN("the loopback accept queue never filled: expired connect not exercised");
      return;
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      CHECK_THROWS_AS(TcpStream::connect(full.local_address(), t), TimeoutError);
    }
  });
}

TEST_CASE("UDP recv: none and huge wait for a datagram, zero and negative take one already there", "[io][timeout]") {
  FdLeakCheck fdc;
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    UdpSocket server = UdpSocket::bind("127.0.0.1", 0);
    UdpSocket client = UdpSocket::connect("127.0.0.1", server.local_address().port());
    char buf[16];
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      auto sender = after_a_while([&] { client.send("late"); });
      SocketAddress from;
      CHECK(server.recv_from(buf, sizeof buf, &from, t).size == 4);
      sender.get();
      CHECK(from.to_string() == client.local_address().to_string());
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      CHECK_THROWS_AS(server.recv(buf, sizeof buf, t), TimeoutError);
      client.send("here");  // on loopback it is queued at the receiver when send returns
      CHECK(server.recv(buf, sizeof buf, t).size == 4);
      CHECK(std::string(buf, 4) == "here");
    }
  });
}

TEST_CASE("Process::wait: none and huge wait for the exit, zero and negative only look", "[io][timeout][process]") {
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      Process p = Process::spawn({"sleep", "0.01"});
      CHECK(p.wait(t).code == 0);
    }
    Process p = Process::spawn({"sleep", "1000"});
    for (TimeLimit t : expired()) {
      INFO(show(t));
      CHECK_THROWS_AS(p.wait(t), TimeoutError);
      CHECK_FALSE(p.returncode().has_value());  // still running, not reaped
    }
    p.kill();
    CHECK(p.wait(std::nullopt).signal == SIGKILL);
    for (TimeLimit t : expired()) CHECK(p.wait(t).signal == SIGKILL);  // ended: its status
  });
}

TEST_CASE("wait_signal: none and huge wait for the signal, zero and negative take one already pending",
          "[io][timeout][signals]") {
  REQUIRE(usr1_blocked);
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      auto sender = after_a_while([] { ::kill(::getpid(), SIGUSR1); });
      CHECK(wait_signal({SIGUSR1}, t) == SIGUSR1);
      sender.get();
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      CHECK_THROWS_AS(wait_signal({SIGUSR1}, t), TimeoutError);
      ::kill(::getpid(), SIGUSR1);  // blocked everywhere: pending when kill returns
      CHECK(wait_signal({SIGUSR1}, t) == SIGUSR1);
    }
  });
}
