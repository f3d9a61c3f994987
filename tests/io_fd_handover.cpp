// A stream whose waits come from different loops: the fd's epoll registration moves to
// the loop that waits on it (FdSource takes it over from the loop that holds it; with
// Options::shuffle at every such wait, not only towards balance), so these drive
// hand-overs back and forth, with a reader and a writer on two loops at
// once, and with a close from a third. Nothing may be lost (every byte arrives, no wait
// hangs) and no fd may leak.
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;

namespace {

using test::FdLeakCheck;

using test::echo_handler;

TaskOptions on_loop(unsigned loop) { return TaskOptions{.pinned = true, .loop = int(loop)}; }

// A task on every loop that yields until stopped: the loops keep turning (they poll
// their epoll every few dozen turns instead of sleeping in it), so a loop that holds an
// fd is mostly outside a poll when another takes the fd over, which is when a hand-over
// may proceed (one from a loop asleep in epoll_wait is declined).
class Busy {
 public:
  explicit Busy(unsigned workers) {
    for (unsigned l = 0; l < workers; ++l)
      tasks_.push_back(spawn(on_loop(l), [this] {
        // relaxed: a stop flag; the join below orders the rest.
        while (!stop_.load(std::memory_order_relaxed)) yield();
      }));
  }
  ~Busy() {
    stop_ = true;
    for (Task<>& t : tasks_) t.get();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<Task<>> tasks_;
};

// One line written and its echo read back, from a task on `loop`; true if it came back
// whole.
bool round_trip_on(unsigned loop, TcpStream& s, const std::string& msg) {
  return spawn(on_loop(loop),
               [&] {
                 s.write_all(msg);
                 return s.read_line() == msg;
               })
      .get();
}

// shuffle: every wait from another loop takes the fd over (not only towards balance).
Options moving(unsigned workers) {
  Options o = test::opts(workers);
  o.shuffle = true;
  return o;
}

// Runs body(srv, workers) in a runtime that takes fds over at every wait from another
// loop, beside an echo server and the yielding tasks of Busy; checks for fd leaks.
template <class F>
void with_echo_server(unsigned workers, F body) {
  FdLeakCheck fdc;
  test::Checked harness(moving(workers));
  harness.rt.block_on([&] {
    Server srv = start_server(echo_handler, "127.0.0.1", 0);
    {
      Busy busy(workers);
      body(srv, workers);
    }
    srv.close();
  });
}

}  // namespace

TEST_CASE("one stream's round trips from every loop in turn", "[io][handover]") {
  with_echo_server(SPINDLE_WORKERS(), [](Server& srv, unsigned workers) {
    TcpStream s = open_connection("127.0.0.1", srv.port());
    int good = 0;
    constexpr int kRounds = 100;
    // Each read waits for the echo on the task's loop, which changes every round.
    for (int i = 0; i < kRounds; ++i)
      good += round_trip_on(unsigned(i) % workers, s, "round " + std::to_string(i) + "\n");
    CHECK(good == kRounds);
    s.close();
  });
}

TEST_CASE("a reader and a writer of one stream on two loops", "[io][handover]") {
  with_echo_server(SPINDLE_WORKERS(), [](Server& srv, unsigned workers) {
    for (int conn = 0; conn < 3; ++conn) {
      TcpStream s = open_connection("127.0.0.1", srv.port());
      // Enough to fill the socket buffers both ways: both sides wait, each from its
      // own loop, so the registration moves between them while the other waits.
      constexpr std::size_t kBytes = 1 << 20;
      std::atomic<std::size_t> read_total{0};
      std::atomic<bool> intact{true};
      Task<> writer = spawn(on_loop(unsigned(conn) % workers), [&] {
        std::vector<char> chunk(16 * 1024);
        for (std::size_t sent = 0; sent < kBytes; sent += chunk.size()) {
          for (std::size_t k = 0; k < chunk.size(); ++k) chunk[k] = char((sent + k) * 131 >> 7);
          s.write_all(chunk.data(), chunk.size());
        }
      });
      Task<> reader = spawn(on_loop(unsigned(conn + 1) % workers), [&] {
        std::vector<char> buf(7 * 1024 + 13);
        std::size_t got = 0;
        while (got < kBytes) {
          const std::size_t n = s.read(buf.data(), buf.size());
          if (n == 0) break;
          for (std::size_t k = 0; k < n; ++k)
            if (buf[k] != char((got + k) * 131 >> 7)) intact = false;
          got += n;
        }
        read_total = got;
      });
      writer.get();
      reader.get();
      CHECK(read_total.load() == kBytes);
      CHECK(intact.load());
      // Closed from a third loop (or the same one with fewer workers) while the
      // registration sits wherever the last wait left it.
      spawn(on_loop(unsigned(conn + 2) % workers), [&] { s.close(); }).get();
    }
  });
}

TEST_CASE("a wait on another loop's fd is cancelled and the stream goes on", "[io][handover]") {
  with_echo_server(SPINDLE_WORKERS(), [](Server& srv, unsigned workers) {
    TcpStream s = open_connection("127.0.0.1", srv.port());
    int good = 0;
    for (int i = 0; i < 20; ++i) {
      // A read that waits (nothing was sent) on one loop, cancelled from here...
      Task<> idle = spawn(on_loop(unsigned(i) % workers), [&] {
        char c;
        (void)s.read(&c, 1);
      });
      test::until_suspended(idle);
      idle.cancel();
      try {
        idle.get();
      } catch (const CancelledError&) {
      }
      // ...then a round trip from the next loop.
      good += round_trip_on(unsigned(i + 1) % workers, s, "after " + std::to_string(i) + "\n");
    }
    CHECK(good == 20);
    s.close();
  });
}
