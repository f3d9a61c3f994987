// I/O timeouts at the edges: a timeout too large for the clock
// (nanoseconds::max(), or one that overflows only once added to now) means "none", like
// the documented 0 (and a negative one), instead of a deadline in the past that timed
// out at once.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spindle/detail/deadline.hpp>
#include <spindle/io.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

// Timeouts that must all mean "none".
std::vector<nanoseconds> no_timeouts() {
  const int64_t now = detail::monotonic_ns();
  return {nanoseconds::max(), nanoseconds(INT64_MAX - now / 2), 0ns, -1s};
}

// Starts body in a task, checks it is still waiting after other work ran (a short real
// wait on a timer of our own: a past deadline would have expired by then), then cancels
// it and checks it ends cancelled.
template <class F>
void still_waiting_then_cancelled(F body) {
  auto t = spawn([&] { body(); });
  test::until_suspended(t);
  for (int i = 0; i < 50; ++i) yield();
  sleep(20ms);
  CHECK_FALSE(t.done());
  t.cancel("enough");
  CHECK_THROWS_AS(t.get(), CancelledError);
}

}  // namespace

TEST_CASE("stream reads with a huge set_timeout wait until cancelled", "[io][deadlines]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    for (nanoseconds d : no_timeouts()) {
      INFO("timeout " << d.count() << " ns");
      auto [a, b] = UnixStream::pair();
      b.set_timeout(d);
      still_waiting_then_cancelled([&b] { (void)b.read_exact(4); });
      // Over TCP on loopback too.
      TcpListener l("127.0.0.1", 0);
      TcpStream c = TcpStream::connect(l.local_address(), 10s);
      TcpStream s = l.accept(nullptr, 10s);
      s.set_timeout(d);
      still_waiting_then_cancelled([&s] { (void)s.read_exact(4); });
    }
  });
}

TEST_CASE("accept and recv_from with a huge timeout wait until cancelled", "[io][deadlines]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    for (nanoseconds d : no_timeouts()) {
      INFO("timeout " << d.count() << " ns");
      TcpListener l("127.0.0.1", 0);
      still_waiting_then_cancelled([&] { (void)l.accept(nullptr, d); });
      UdpSocket u = UdpSocket::bind("127.0.0.1", 0);
      still_waiting_then_cancelled([&] {
        char buf[16];
        (void)u.recv_from(buf, sizeof buf, nullptr, d);
      });
    }
  });
}

TEST_CASE("connect with a huge timeout waits until cancelled", "[io][deadlines]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    // A listener that accepts nothing, with a backlog of 0: once its accept queue is
    // full the kernel drops further SYNs, and a connect stays in progress (retrying).
    TcpListener l("127.0.0.1", 0, ListenOptions{.backlog = 0});
    std::vector<TcpStream> fill;
    bool full = false;
    for (int i = 0; i < 16 && !full; ++i) {
      try {
        fill.push_back(TcpStream::connect(l.local_address(), 300ms));
      } catch (const TimeoutError&) {
        full = true;
      }
    }
    if (!full) {
      WARN("the loopback accept queue never filled: connect case not exercised");
      return;
    }
    for (nanoseconds d : no_timeouts()) {
      INFO("timeout " << d.count() << " ns");
      still_waiting_then_cancelled([&] { (void)TcpStream::connect(l.local_address(), d); });
    }
  });
}

TEST_CASE("Process::wait with a huge timeout waits until cancelled", "[io][deadlines][process]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    Process p = Process::spawn({"sleep", "1000"});
    for (nanoseconds d : no_timeouts()) {
      INFO("timeout " << d.count() << " ns");
      still_waiting_then_cancelled([&] { (void)p.wait(d); });
    }
    p.kill();
    CHECK(p.wait(10s).signal == SIGKILL);
  });
}
