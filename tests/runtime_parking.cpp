// The wake protocol of parked loops, through the public API: work published to a loop
// that sleeps is run, whether the loop sleeps on its futex (it watches no fds) or in
// epoll_wait (it does); timers fire on a loop parked on its futex; a foreign thread's
// completion wakes a parked loop; a loop that gains an fd sleeps in epoll and its I/O
// wakes it; and a stress of all of these with more workers than cores.
//
// Whether a loop really is asleep when the work comes is up to the scheduler (its spin
// policy may keep it searching): each case first waits, for a bounded while, until the
// loop's metrics say it has parked since it went idle, so that the parked path is the
// one taken in practice. The assertions are about behaviour only (the work runs, the
// values add up), never about timing.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

TaskOptions on_loop(unsigned i) { return TaskOptions{.name = "pinned", .pinned = true, .loop = int(i)}; }

uint64_t parks_of(Runtime& rt, unsigned i) { return rt.metrics().workers[i].parks; }

// Tells when a loop has gone to sleep since it was last handed work: its park count has
// moved past the count seen then, and it is idle. The caller calls published(i) just
// before it hands loop i work, and wait(i) before the next hand-over.
class Sleeps {
 public:
  explicit Sleeps(Runtime& rt) : rt_(rt), seen_(rt.workers(), 0) {}
  void published(unsigned i) { seen_[i] = parks_of(rt_, i); }
  // Waits a bounded while (then goes on: the case still runs, through whichever path).
  void wait(unsigned i) {
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    for (;;) {
      const Metrics m = rt_.metrics();
      const WorkerMetrics& w = m.workers[i];
      if ((w.idle && w.parks > seen_[i]) || std::chrono::steady_clock::now() > give_up) return;
      std::this_thread::sleep_for(100us);
    }
  }
  // Waits a bounded while until every loop is idle (searching, or parked), twice in a
  // row a millisecond apart: a loop that did not get the last work parks without its
  // count moving past anything we saw.
  void wait_all_idle() {
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    int in_a_row = 0;
    while (in_a_row < 2 && std::chrono::steady_clock::now() < give_up) {
      const Metrics m = rt_.metrics();
      bool all = true;
      for (const WorkerMetrics& w : m.workers) all = all && w.idle;
      in_a_row = all ? in_a_row + 1 : 0;
      std::this_thread::sleep_for(1ms);
    }
  }
  // wait(i), then published(i).
  void before_publish(unsigned i) {
    wait(i);
    published(i);
  }

 private:
  Runtime& rt_;
  std::vector<uint64_t> seen_;
};

}  // namespace

TEST_CASE("pinned work published from outside to a parked loop (futex) runs") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  Sleeps sleeps(h.rt);
  for (int round = 0; round < 5; ++round) {
    for (unsigned i = 0; i < n; ++i) {
      sleeps.before_publish(i);
      auto t = h.rt.spawn(on_loop(i), [i] { return i * 10 + 1; });
      CHECK(t.get() == i * 10 + 1);
    }
  }
}

TEST_CASE("work any loop may run, published while every loop is parked, runs") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  Sleeps sleeps(h.rt);
  for (int round = 0; round < 10; ++round) {
    sleeps.wait_all_idle();
    std::vector<Task<int>> ts;
    for (int k = 0; k < 16; ++k) ts.push_back(h.rt.spawn([k] { return k; }));
    int sum = 0;
    for (auto& t : ts) sum += t.get();
    CHECK(sum == 120);
  }
}

TEST_CASE("a loop parked on its futex is woken by another loop's pinned work") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  const unsigned last = n - 1;
  Sleeps sleeps(h.rt);
  h.block_on([&] {
    // From loop 0's tasks to the last loop and back, the last loop parked each time
    // (with one loop, it is the publisher itself, which cannot wait for its own sleep).
    for (int round = 0; round < 20; ++round) {
      auto waiter = spawn(on_loop(0), [&, round] {
        if (last != 0) sleeps.before_publish(last);  // blocks loop 0 a moment: a test's liberty
        return spawn(on_loop(last), [round] { return round; }).get();
      });
      CHECK(waiter.get() == round);
    }
  });
}

TEST_CASE("timers fire on a loop parked on its futex") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  std::vector<Task<int>> ts;
  for (unsigned i = 0; i < n; ++i)
    ts.push_back(h.rt.spawn(on_loop(i), [] {
      int fired = 0;
      for (int k = 0; k < 5; ++k) {
        sleep(1ms);  // nothing else to do: the loop parks until its timer is due
        ++fired;
      }
      return fired;
    }));
  for (auto& t : ts) CHECK(t.get() == 5);
  // call_later from outside: armed on loop 0 through its timer inbox while it sleeps.
  Sleeps sleeps(h.rt);
  sleeps.before_publish(0);
  Future<int> f;
  auto handle = h.rt.call_later(2ms, [f]() mutable { f.set_result(7); });
  CHECK(h.block_on([f]() mutable { return f.get(); }) == 7);
}

TEST_CASE("a foreign thread's completion wakes a parked loop") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  Sleeps sleeps(h.rt);
  for (unsigned i = 0; i < n; ++i) {
    for (bool pinned : {true, false}) {
      Future<int> f;
      std::atomic<bool> waiting{false};
      TaskOptions o = pinned ? on_loop(i) : TaskOptions{};
      if (pinned) sleeps.published(i);
      auto t = h.rt.spawn(o, [f, &waiting]() mutable {
        waiting.store(true);
        return f.get() + 1;
      });
      while (!waiting.load()) std::this_thread::yield();
      // The waiting task's loop (loop i if pinned) goes to sleep; then another thread
      // completes the future.
      if (pinned) sleeps.wait(i);
      std::thread completer([f]() mutable { f.set_result(41); });
      CHECK(t.get() == 42);
      completer.join();
    }
  }
}

TEST_CASE("a loop that gains an fd parks in epoll and its I/O wakes it") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  Sleeps sleeps(h.rt);
  for (unsigned i = 0; i < n; ++i) {
    TcpListener l("127.0.0.1", 0);
    const uint16_t port = l.port();
    std::atomic<bool> accepting{false};
    sleeps.published(i);
    // accept() registers the listener with loop i (the loop the pinned task runs on):
    // from then on the loop parks in epoll_wait, where the connection wakes it.
    auto t = h.rt.spawn(on_loop(i), [&l, &accepting] {
      accepting.store(true);
      TcpStream s = l.accept();
      char c = 0;
      return s.read(&c, 1) == 1 ? int(c) : -1;
    });
    while (!accepting.load()) std::this_thread::yield();
    sleeps.before_publish(i);
    // A plain blocking client on this thread.
    const int fd = test::raw_connect(port);
    REQUIRE(fd >= 0);
    sleeps.before_publish(i);  // accepted, now waiting to read: parked again
    const char x = 'x';
    REQUIRE(::write(fd, &x, 1) == 1);
    CHECK(t.get() == 'x');
    // Still watching the listener: pinned work published to it now wakes it through
    // its eventfd.
    sleeps.before_publish(i);
    CHECK(h.rt.spawn(on_loop(i), [] { return 5; }).get() == 5);
    ::close(fd);
    l.close();
  }
}

TEST_CASE("parking stress: ping-pong across loops, foreign wakes and fan-out, more workers than cores") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  const int rounds = 2000 / test::kScaleDown;
  std::atomic<uint64_t> total{0};
  h.block_on([&] {
    std::vector<Task<>> ts;
    // Pinned pairs bouncing a value between two loops (one loop with one worker).
    for (unsigned a = 0; a < n; ++a) {
      const unsigned b = (a + 1) % n;
      ts.push_back(spawn(on_loop(a), [&, b] {
        uint64_t v = 0;
        for (int r = 0; r < rounds; ++r) {
          v = spawn(on_loop(b), [v] { return v + 1; }).get();
          if (r % 64 == 0) sleep(50us);  // now and then both sides go to sleep
        }
        total.fetch_add(v);
      }));
    }
    // Tasks woken from foreign threads, and fan-out waves any loop may take.
    for (int k = 0; k < 4; ++k) {
      ts.push_back(spawn([&] {
        for (int r = 0; r < rounds / 8; ++r) {
          Future<int> f;
          std::thread th([f]() mutable { f.set_result(1); });
          total.fetch_add(uint64_t(f.get()));
          th.join();
          std::vector<Task<int>> wave;
          for (int j = 0; j < 8; ++j) wave.push_back(spawn([j] { return j; }));
          int s = 0;
          for (auto& w : wave) s += w.get();
          total.fetch_add(uint64_t(s));
        }
      }));
    }
    for (auto& t : ts) t.get();
  });
  CHECK(total.load() == uint64_t(n) * rounds + 4ull * (rounds / 8) * (1 + 28));
}
