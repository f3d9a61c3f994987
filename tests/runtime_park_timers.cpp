// Timers on loops that sleep in epoll (loops that watch fds). Such a loop leaves a
// deadline more than 200 us away to its reactor's timerfd, which stays armed across parks
// and is re-armed only when an earlier deadline comes or its time has passed
// (docs/architecture.md, "Parking"). Each case drives one way that could go wrong, on
// every loop at once: an earlier deadline that must re-arm it; a timerfd armed earlier
// than the deadline (it wakes the loop early, and the deadline still holds); a timerfd
// whose time has passed (left readable, every later park would return at once);
// deadlines of zero, negative, far in the future and none; a cancel racing the expiry,
// on the sleeper's loop and from another; threads outside the runtime arming timers
// while it shuts down. The assertions are about behaviour (what fired, in which order,
// never early; how often an idle loop woke), never about how long anything took; the
// tasks on the loops report, the test's own task checks (Catch's assertions are not
// thread-safe).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

TaskOptions on_loop(unsigned i) { return TaskOptions{.name = "pinned", .pinned = true, .loop = int(i)}; }

// Cancels each task, and checks that each ended cancelled.
void cancel_all(std::vector<Task<>>& ts) {
  for (auto& t : ts) t.cancel("done");
  for (auto& t : ts) CHECK_THROWS_AS(t.get(), CancelledError);
}

// Gives every loop an fd to watch, so that each parks in epoll: a task pinned to each
// loop waits in accept() on a listener of its own that nobody connects to. Call inside
// the runtime; stop() cancels them.
class Watching {
 public:
  explicit Watching(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      listeners_.push_back(std::make_unique<TcpListener>("127.0.0.1", 0));
      TcpListener* l = listeners_.back().get();
      accepts_.push_back(spawn(on_loop(i), [l] { (void)l->accept(); }));
      test::until_suspended(accepts_.back());  // waiting in accept: the fd is registered
    }
  }
  void stop() {
    cancel_all(accepts_);
    for (auto& l : listeners_) l->close();
  }

 private:
  std::vector<std::unique_ptr<TcpListener>> listeners_;
  std::vector<Task<>> accepts_;
};

// Runs body(n, runtime) in a task of a runtime of SPINDLE_WORKERS() = n loops, each of
// which watches an fd (Watching) meanwhile.
template <class F>
void on_watching_loops(F body) {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  Runtime& rt = h.rt;
  h.block_on([&] {
    Watching w(n);
    body(n, rt);
    w.stop();
  });
}

uint64_t total_parks(Runtime& rt) {
  uint64_t p = 0;
  for (const WorkerMetrics& w : rt.metrics().workers) p += w.parks;
  return p;
}

}  // namespace

TEST_CASE("an earlier deadline than the one armed wakes an epoll-parked loop in time") {
  on_watching_loops([](unsigned n, Runtime&) {
    std::vector<Task<>> longs;
    std::vector<Task<bool>> shorts;
    // A long sleep first: each loop arms for it and parks. Then a short one, whose
    // deadline comes first: the loop must arm again for it rather than keep the long one.
    for (unsigned i = 0; i < n; ++i) {
      longs.push_back(spawn(on_loop(i), [] { sleep(30s); }));
      test::until_suspended(longs.back());
    }
    for (unsigned i = 0; i < n; ++i) {
      shorts.push_back(spawn(on_loop(i), [] {
        const auto until = Clock::now() + 30ms;
        sleep_until(until);
        return Clock::now() >= until;  // never early
      }));
    }
    for (auto& t : shorts) CHECK(t.get());
    // Had a loop kept the long deadline, its short sleep would have ended with the long one.
    for (auto& t : longs) CHECK_FALSE(t.done());
    cancel_all(longs);
  });
}

TEST_CASE("a loop woken early by a deadline that went away still sleeps until its next one") {
  on_watching_loops([](unsigned n, Runtime&) {
    // Each loop arms for a 300 ms sleep that is then cancelled; a 500 ms sleep armed
    // after it keeps the earlier arming, which wakes the loop early once with nothing due.
    std::vector<Task<>> gone;
    std::vector<Task<bool>> kept;
    for (unsigned i = 0; i < n; ++i) {
      gone.push_back(spawn(on_loop(i), [] { sleep(300ms); }));
      test::until_suspended(gone.back());
    }
    for (auto& t : gone) t.cancel("gone");
    for (auto& t : gone) {
      try {
        t.get();  // on a machine slow enough, the sleep ended before the cancel came
      } catch (const CancelledError&) {
      }
    }
    for (unsigned i = 0; i < n; ++i)
      kept.push_back(spawn(on_loop(i), [] {
        const auto until = Clock::now() + 500ms;
        sleep_until(until);
        return Clock::now() >= until;  // never early
      }));
    for (auto& t : kept) CHECK(t.get());
  });
}

TEST_CASE("a loop whose far deadline has fired sleeps when idle: it does not wake over and over") {
  on_watching_loops([](unsigned n, Runtime& rt) {
    // A far sleep on each loop (armed through the timerfd), which fires.
    std::vector<Task<>> ts;
    for (unsigned i = 0; i < n; ++i) ts.push_back(spawn(on_loop(i), [] { sleep(20ms); }));
    for (auto& t : ts) t.get();
    // Then near sleeps (100 us: epoll's own timeout) on each loop, and nothing: were the
    // fired timerfd left readable, every park from here on would return at once,
    // thousands of times over these 80 ms. Sleeping loops park about once per sleep, and
    // an idle runtime not at all.
    const uint64_t before = total_parks(rt);
    ts.clear();
    for (unsigned i = 0; i < n; ++i)
      ts.push_back(spawn(on_loop(i), [] {
        for (int k = 0; k < 20; ++k) sleep(100us);
      }));
    for (auto& t : ts) t.get();
    sleep(80ms);
    const uint64_t parks = total_parks(rt) - before;
    INFO("parks: " << parks);
    CHECK(parks < 400 * uint64_t(n));
  });
}

TEST_CASE("sleeps of zero, negative, far and unbounded length on epoll-parked loops") {
  on_watching_loops([](unsigned n, Runtime&) {
    std::vector<Task<>> sleepers;
    std::vector<Task<bool>> done;
    for (unsigned i = 0; i < n; ++i) {
      // Far enough that only a cancel ends them: a hundred years, and no deadline at all.
      sleepers.push_back(spawn(on_loop(i), [] { sleep(std::chrono::hours(24 * 365 * 100)); }));
      sleepers.push_back(spawn(on_loop(i), [] { sleep(std::chrono::nanoseconds::max()); }));
      done.push_back(spawn(on_loop(i), [] {
        sleep(0ms);
        sleep(-5s);
        sleep_until(Clock::now() - 1h);
        const auto until = Clock::now() + 5ms;
        sleep_until(until);
        return Clock::now() >= until;
      }));
    }
    for (auto& t : done) CHECK(t.get());
    for (auto& t : sleepers) {
      test::until_suspended(t);
      CHECK_FALSE(t.done());
    }
    cancel_all(sleepers);
  });
}

TEST_CASE("a cancel racing the expiry of a sleep on an epoll-parked loop: each sleep ends once, never early") {
  on_watching_loops([](unsigned n, Runtime&) {
    // Sleeps of 0.1 to 2.9 ms (both sides of the line between epoll's own timeout and
    // the timerfd), each cancelled before, at or after its deadline, by a task on the
    // sleeper's loop (even k) or on the next loop (odd k; the same loop with 1 worker).
    constexpr int kPerLoop = 48;
    struct Race {
      Task<bool> sleeper;
      Task<bool> canceller;  // true: its cancel() said it took effect
    };
    std::vector<Race> races;
    for (unsigned i = 0; i < n; ++i)
      for (int k = 0; k < kPerLoop; ++k) {
        const auto until = Clock::now() + std::chrono::microseconds(100 + 400 * (k % 8));
        const auto cancel_at = until + std::chrono::microseconds(200 * (k % 3) - 200);
        Task<bool> s = spawn(on_loop(i), [until] {
          sleep_until(until);
          return Clock::now() >= until;  // never early
        });
        Task<bool> c = spawn(on_loop(k % 2 ? (i + 1) % n : i), [s, cancel_at]() mutable {
          sleep_until(cancel_at);
          return s.cancel("race");
        });
        races.push_back({s, c});
      }
    int ended = 0, cancelled = 0;
    for (Race& r : races) {
      const bool took = r.canceller.get();
      try {
        const bool never_early = r.sleeper.get();
        CHECK(never_early);
        ++ended;
      } catch (const CancelledError&) {
        CHECK(took);  // a cancel that said it came too late cannot have ended the sleep
        ++cancelled;
      }
    }
    INFO(ended << " slept out, " << cancelled << " cancelled");
    CHECK(ended + cancelled == int(n) * kPerLoop);
  });
}

TEST_CASE("threads outside the runtime arm near and far timers on epoll-parked loops while it shuts down") {
  test::FdLeakCheck fds;  // each loop's timerfd included
  const unsigned n = SPINDLE_WORKERS();
  constexpr int kRounds = 10, kThreads = 4, kCalls = 2000;
  int unexpected = 0;
  for (int round = 0; round < kRounds; ++round) {
    test::Reports reports;
    auto rt = std::make_unique<Runtime>(test::opts(n, &reports));
    std::vector<std::unique_ptr<TcpListener>> listeners;
    for (unsigned i = 0; i < n; ++i) {
      listeners.push_back(std::make_unique<TcpListener>("127.0.0.1", 0));
      TcpListener* l = listeners.back().get();
      (void)rt->spawn(on_loop(i), [l] { (void)l->accept(); });  // shutdown cancels it, and it ends
    }
    std::atomic<int> calls{0}, fired{0}, odd{0};
    std::vector<std::vector<TimerHandle>> handles(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        // Zero, negative, near, far (the timerfd), an hour and no deadline at all.
        const std::chrono::nanoseconds ds[] = {0ns, -1ms, 50us, 5ms, 1h, std::chrono::nanoseconds::max()};
        try {
          for (int k = 0; k < kCalls; ++k) {
            calls.fetch_add(1, std::memory_order_relaxed);
            handles[t].push_back(rt->call_later(ds[k % 6], [&fired] { fired.fetch_add(1); }));
          }
        } catch (const RuntimeError&) {
          // the clear answer once the runtime is closing
        } catch (...) {
          odd.fetch_add(1);
        }
      });
    while (calls.load(std::memory_order_relaxed) < 100 * (1 + round % 8)) std::this_thread::yield();
    // A grace period, so that the accepts end (a task abandoned in accept() would keep its
    // listener's close waiting).
    rt->shutdown(10s);
    for (auto& th : threads) th.join();
    CHECK_THROWS_AS(rt->call_later(1h, [] {}), RuntimeError);
    unexpected += odd.load();
    CHECK(fired.load() <= calls.load());
    listeners.clear();
    rt.reset();
    for (auto& v : handles)
      for (TimerHandle& h : v) (void)h.cancel();  // harmless after the runtime is gone
  }
  CHECK(unexpected == 0);
}
