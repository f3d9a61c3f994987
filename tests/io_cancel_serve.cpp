// Cancel-then-serve races over the I/O and executor waits: a task waits in a
// stream read, an accept, a UDP recv, wait_signal, Process::wait, to_thread,
// run_in_executor or ProcessPool::call, and at once it is cancelled and what it waits
// for arrives, in both orders, from one task, from two loops and from a foreign thread
// (tests/cancel_serve.hpp). Afterwards what arrived is accounted for exactly once: the
// cancelled wait returned it, or the next wait gets it; a job ran exactly once.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <spindle/executors.hpp>
#include <spindle/io.hpp>

#include "cancel_serve.hpp"
#include "io_support.hpp"

using namespace spindle;
using test::Order;
using test::until_suspended;
using namespace std::chrono_literals;

namespace {

// The signal wait_signal races on: blocked before any thread exists (signals.hpp).
const bool blocked_at_start = (block_signals({SIGUSR2}), true);

// In a ProcessPool worker (this program re-run): waits until the file `go` exists, then
// appends one line to `log` (the call's side effect) and returns n.
int append_when_impl(std::string go, std::string log, int n) {
  while (!std::filesystem::exists(go)) ::usleep(100);
  std::ofstream(log, std::ios::app) << n << '\n';
  return n;
}
const auto append_when = process_function("append_when", &append_when_impl);
// After the registrations: in a worker process this never returns.
const bool served = (serve_process_worker(), true);

int line_count(const std::string& path) {
  std::ifstream f(path);
  int n = 0;
  for (std::string l; std::getline(f, l);) ++n;
  return n;
}

struct Tally {
  int returned = 0;  // the cancelled wait returned it
  int next = 0;      // the next wait got it
  int bad = 0;       // lost, doubled or wrong
};

}  // namespace

TEST_CASE("a stream read cancelled as data arrives: the bytes are returned or read next, never lost",
          "[cancel][serve][stream]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(100);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    TcpListener l("127.0.0.1", 0);
    auto accepted = spawn([&] { return l.accept(); });
    auto client = open_connection("127.0.0.1", l.local_address().port());
    TcpStream server = accepted.get();
    const int peer = client.native_handle();
    for (Order order : test::kOrders) {
      Tally t;
      for (int i = 0; i < rounds; ++i) {
        char msg[16];
        const int len = std::snprintf(msg, sizeof msg, "<%d>", i);
        const std::string want(msg, std::size_t(len));
        auto reader = spawn([&] { return server.read(64); });
        until_suspended(reader);
        racer.cancel_and_serve(order, reader, [&] {
          // A raw send: the client's fd is non-blocking, and a few bytes always fit.
          CHECK(::send(peer, msg, std::size_t(len), MSG_NOSIGNAL) == len);
        });
        std::string got;
        bool returned = false;
        try {
          got = reader.get();
          returned = !got.empty();
        } catch (const CancelledError&) {
        }
        // The rest of this round's message is read next; a byte lost would make this
        // read wait for ever (bounded: it counts as bad) and desynchronise later rounds.
        if (got.size() < want.size()) {
          try {
            got += timeout(10s, [&] { return server.read_exact(want.size() - got.size()); });
          } catch (const TimeoutError&) {
          }
        }
        t.returned += returned;
        t.next += !returned;
        if (got != want) ++t.bad;
      }
      INFO(test::order_name(order) << ", " << n << " workers: returned " << t.returned << ", read next " << t.next);
      CHECK(t.bad == 0);
    }
  });
}

TEST_CASE("an accept cancelled as a connection arrives: it is returned or accepted next, never dropped",
          "[cancel][serve][accept]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(60);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    TcpListener l("127.0.0.1", 0);
    const uint16_t port = l.local_address().port();
    for (Order order : test::kOrders) {
      Tally t;
      for (int i = 0; i < rounds; ++i) {
        auto acceptor = spawn([&] { return l.accept(); });
        until_suspended(acceptor);
        int fd = -1;
        uint16_t from = 0;
        racer.cancel_and_serve(order, acceptor, [&] { fd = test::raw_connect(port, &from); });
        REQUIRE(fd >= 0);
        bool returned = false;
        try {
          TcpStream s = acceptor.get();
          returned = true;
          if (s.peer_address().port() != from) ++t.bad;
        } catch (const CancelledError&) {
        }
        // A marker connection after it: the next accept gets this round's connection
        // first if the cancelled accept did not return it, then the marker.
        uint16_t marker_from = 0;
        const int marker = test::raw_connect(port, &marker_from);
        REQUIRE(marker >= 0);
        try {
          TcpStream s = timeout(10s, [&] { return l.accept(); });
          if (!returned) {
            if (s.peer_address().port() != from) ++t.bad;
            s = timeout(10s, [&] { return l.accept(); });
          }
          if (s.peer_address().port() != marker_from) ++t.bad;
        } catch (const TimeoutError&) {
          ++t.bad;  // a connection was dropped
        }
        ::close(fd);
        ::close(marker);
        t.returned += returned;
        t.next += !returned;
      }
      INFO(test::order_name(order) << ", " << n << " workers: returned " << t.returned << ", accepted next " << t.next);
      CHECK(t.bad == 0);
    }
  });
}

TEST_CASE("a UDP recv cancelled as a datagram arrives: it is returned or received next, never lost",
          "[cancel][serve][udp]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(100);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    UdpSocket rx = UdpSocket::bind("127.0.0.1", 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(rx.local_address().port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int tx = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(tx >= 0);
    auto send_int = [&](int v) {
      CHECK(::sendto(tx, &v, sizeof v, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == sizeof v);
    };
    auto recv_int = [&] {
      int v = -1;
      const std::size_t got = rx.recv(&v, sizeof v);
      return got == sizeof v ? v : -2;
    };
    for (Order order : test::kOrders) {
      Tally t;
      for (int i = 0; i < rounds; ++i) {
        auto receiver = spawn(recv_int);
        until_suspended(receiver);
        racer.cancel_and_serve(order, receiver, [&] { send_int(i); });
        bool returned = false;
        try {
          if (receiver.get() != i) ++t.bad;
          returned = true;
        } catch (const CancelledError&) {
        }
        send_int(-100 - i);  // a marker after it
        try {
          if (!returned && timeout(10s, recv_int) != i) ++t.bad;
          if (timeout(10s, recv_int) != -100 - i) ++t.bad;
        } catch (const TimeoutError&) {
          ++t.bad;  // a datagram was lost
        }
        t.returned += returned;
        t.next += !returned;
      }
      INFO(test::order_name(order) << ", " << n << " workers: returned " << t.returned << ", received next " << t.next);
      CHECK(t.bad == 0);
    }
    ::close(tx);
  });
}

TEST_CASE("wait_signal cancelled as the signal arrives: it is returned or stays pending, once",
          "[cancel][serve][signals]") {
  REQUIRE(blocked_at_start);
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(100);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, SIGUSR2);
    const timespec zero{0, 0};
    while (sigtimedwait(&only, nullptr, &zero) == SIGUSR2) {  // left by an earlier failure
    }
    for (Order order : test::kOrders) {
      Tally t;
      for (int i = 0; i < rounds; ++i) {
        auto waiter = spawn([] { return wait_signal({SIGUSR2}); });
        until_suspended(waiter);
        racer.cancel_and_serve(order, waiter, [] { ::kill(::getpid(), SIGUSR2); });
        bool returned = false;
        try {
          if (waiter.get() != SIGUSR2) ++t.bad;
          returned = true;
        } catch (const CancelledError&) {
        }
        // The process-wide pending set: the signal is there iff nobody consumed it.
        const bool pending = sigtimedwait(&only, nullptr, &zero) == SIGUSR2;
        if (returned == pending) ++t.bad;  // lost (neither) or doubled (both)
        t.returned += returned;
        t.next += pending;
      }
      INFO(test::order_name(order) << ", " << n << " workers: returned " << t.returned << ", left pending " << t.next);
      CHECK(t.bad == 0);
    }
  });
}

TEST_CASE("Process::wait cancelled as the child exits: the status is returned, and returned again later",
          "[cancel][serve][process]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(15);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    for (Order order : test::kOrders) {
      Tally t;
      for (int i = 0; i < rounds; ++i) {
        Process p = Process::spawn({"/bin/sleep", "1000"});
        const pid_t pid = p.pid();
        auto waiter = spawn([&] { return p.wait(); });
        until_suspended(waiter);
        racer.cancel_and_serve(order, waiter, [pid] { ::kill(pid, SIGTERM); });
        std::optional<ExitStatus> first;
        try {
          first = waiter.get();
        } catch (const CancelledError&) {
        }
        const ExitStatus again = timeout(10s, [&] { return p.wait(); });
        if (again.signal != SIGTERM) ++t.bad;
        if (first && !(*first == again)) ++t.bad;
        t.returned += first.has_value();
        t.next += !first;
      }
      INFO(test::order_name(order) << ", " << n << " workers: returned " << t.returned << ", waited again " << t.next);
      CHECK(t.bad == 0);
    }
  });
}

TEST_CASE("to_thread and run_in_executor cancelled as the job ends: the job ran once, nothing is reported",
          "[cancel][serve][executors]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(60);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    ThreadPool pool(2);
    for (bool own_pool : {false, true}) {
      for (Order order : test::kOrders) {
        Tally t;
        for (int i = 0; i < rounds; ++i) {
          std::atomic<bool> go{false}, entered{false};
          std::atomic<int> effects{0};
          auto job = [&, i] {
            // relaxed: flags between the test and the job; the effect is read after
            // the job's counter is seen, with acquire.
            entered.store(true, std::memory_order_relaxed);
            while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
            effects.fetch_add(1, std::memory_order_release);
            return i;
          };
          auto caller = spawn([&] { return own_pool ? run_in_executor(pool, job) : to_thread(job); });
          while (!entered.load(std::memory_order_relaxed)) yield();
          until_suspended(caller);
          racer.cancel_and_serve(order, caller, [&] { go.store(true, std::memory_order_release); });
          try {
            if (caller.get() != i) ++t.bad;
            ++t.returned;
          } catch (const CancelledError&) {
            ++t.next;
          }
          // The job finishes on its thread either way (bounded: it was released).
          for (int k = 0; effects.load(std::memory_order_acquire) == 0 && k < 10'000'000; ++k) yield();
          if (effects.load(std::memory_order_acquire) != 1) ++t.bad;
        }
        INFO((own_pool ? "run_in_executor" : "to_thread")
             << ", " << test::order_name(order) << ", " << n << " workers: returned " << t.returned << ", cancelled "
             << t.next);
        CHECK(t.bad == 0);
      }
    }
  });
}

TEST_CASE("ProcessPool::call cancelled as the call ends: it ran once, the pool stays healthy",
          "[cancel][serve][process_pool]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(6);
  const auto dir = std::filesystem::temp_directory_path() / ("spindle_cs_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    test::Checked h(n);
    h.rt.block_on([&] {
      test::Racer racer(n);
      ProcessPool pool({.workers = 1});
      int id = 0;
      for (Order order : test::kOrders) {
        Tally t;
        for (int i = 0; i < rounds; ++i, ++id) {
          const std::string go = (dir / ("go" + std::to_string(id))).string();
          const std::string log = (dir / ("log" + std::to_string(id))).string();
          auto caller = spawn([&] { return pool.call(append_when, go, log, id); });
          until_suspended(caller);
          racer.cancel_and_serve(order, caller, [&] { std::ofstream{go}; });
          try {
            if (caller.get() != id) ++t.bad;
            ++t.returned;
          } catch (const CancelledError&) {
            ++t.next;
          }
          // The next call runs after it in the one worker, so it has ended by then.
          const std::string go2 = log + ".next";
          std::ofstream{go2};
          if (pool.call(append_when, go2, log + ".2", -1) != -1) ++t.bad;
          if (line_count(log) != 1) ++t.bad;
        }
        INFO(test::order_name(order) << ", " << n << " workers: returned " << t.returned << ", cancelled " << t.next);
        CHECK(t.bad == 0);
      }
    });
  }
  std::filesystem::remove_all(dir);
}
