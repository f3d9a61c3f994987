// Timers: sleep, sleep_until, call_soon, call_later, cancellation of each, foreign threads.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("sleep suspends for at least its duration; others run meanwhile", "[timers]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> ticks{0};
    auto busy = spawn([&] {
      for (int i = 0; i < 100; ++i) {
        ++ticks;
        yield();
      }
    });
    const auto t0 = Clock::now();
    sleep(20ms);
    CHECK(Clock::now() - t0 >= 20ms);
    busy.get();
    CHECK(ticks == 100);
  });
}

TEST_CASE("sleepers never wake early; on one loop they resume in deadline order", "[timers]") {
  const unsigned n = SPINDLE_WORKERS();
  const Options o = test::opts(n);
  test::Checked harness(o);
  Runtime& rt = harness.rt;
  // Resumption order is promised only within one loop (and not with Options::shuffle,
  // whose point is to vary it); across loops, each wakes on its own clock.
  const bool ordered = n == 1 && !o.shuffle;
  rt.block_on([ordered] {
    std::mutex mu;
    std::vector<int> order;
    std::vector<Task<>> ts;
    // Deadlines from one base far enough ahead that every sleeper is asleep before the
    // first is due, however late the scheduler starts it (a loaded machine, TSan).
    const auto base = Clock::now() + 200ms;
    for (int d : {40, 10, 30, 20})
      ts.push_back(spawn([&, d] {
        sleep_until(base + std::chrono::milliseconds(d));
        CHECK(Clock::now() >= base + std::chrono::milliseconds(d));  // never early
        std::lock_guard lk(mu);
        order.push_back(d);
      }));
    for (auto& t : ts) t.get();
    if (ordered) {
      CHECK(order == std::vector<int>{10, 20, 30, 40});
    } else {
      std::sort(order.begin(), order.end());
      CHECK(order == std::vector<int>{10, 20, 30, 40});  // each woke once
    }
  });
}

TEST_CASE("zero and negative sleeps yield instead of hanging", "[timers]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    sleep(0ms);
    sleep(-5s);
    sleep_until(Clock::now() - 1h);
    SUCCEED("returned");
  });
}

TEST_CASE("a sleeping task is cancellable, and its timer does not fire later", "[timers]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> after{false};
    auto t = spawn([&] {
      sleep(10s);
      after = true;
    });
    test::until_suspended(t);
    const auto t0 = Clock::now();
    t.cancel("wake up");
    CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK(Clock::now() - t0 < 5s);
    CHECK_FALSE(after.load());
  });
}

TEST_CASE("call_soon and call_later run callbacks in tasks; cancel stops them", "[timers]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<int> soon, later;
    call_soon([soon]() mutable { soon.set_result(1); });
    CHECK(soon.get() == 1);
    const auto t0 = Clock::now();
    auto h = call_later(15ms, [later]() mutable { later.set_result(2); });
    CHECK(later.get() == 2);
    CHECK(Clock::now() - t0 >= 15ms);
    CHECK_FALSE(h.cancel());  // already fired

    std::atomic<bool> fired{false};
    auto token = std::make_shared<int>(0);
    auto c = call_later(10ms, [&fired, token] { fired = true; });
    CHECK(token.use_count() == 2);
    CHECK(c.cancel());
    CHECK(c.cancelled());
    CHECK(token.use_count() == 1);  // cancel released the callback's captures at once
    CHECK_FALSE(c.cancel());        // twice is harmless
    sleep(30ms);
    CHECK_FALSE(fired.load());
  });
}

TEST_CASE("a timer set from a foreign thread wakes a parked loop", "[timers]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  std::this_thread::sleep_for(5ms);  // let every worker park
  Future<Clock::time_point> f;
  const auto t0 = Clock::now();
  auto h = rt.call_later(20ms, [f]() mutable { f.set_result(Clock::now()); });
  CHECK(f.get() - t0 >= 20ms);
  auto s = rt.call_soon([] { return; });
  s.get();
}

TEST_CASE("100 sleepers per worker all finish", "[timers]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  const int done = rt.block_on([] {
    std::vector<Task<int>> ts;
    for (int i = 0; i < 100 * 8; ++i)
      ts.push_back(spawn([i] {
        sleep(std::chrono::milliseconds(1 + i % 17));
        return 1;
      }));
    int s = 0;
    for (auto& t : ts) s += t.get();
    return s;
  });
  CHECK(done == 800);
}

TEST_CASE("cancelled timers are dropped long before their deadline; armed ones stay", "[timers]") {
  // A timeout armed for each request and cancelled when the request ends never reaches
  // the top of its heap: sweeps must drop such entries, or the heap grows with every
  // request for as long as the timeout. Nine in ten of these are cancelled.
  test::Checked harness(1);
  Runtime& rt = harness.rt;
  constexpr int kTimers = 50'000, kKept = kTimers / 10;
  std::atomic<int> fired{0};
  std::size_t pending = 0;
  rt.block_on([&] {
    std::vector<TimerHandle> kept;
    for (int i = 0; i < kTimers; ++i) {
      TimerHandle h = call_later(1h, [&] { ++fired; });
      if (i % 10 == 0)
        kept.push_back(std::move(h));
      else
        REQUIRE(h.cancel());
    }
    pending = rt.metrics().workers[0].timers_pending;
    for (TimerHandle& h : kept) REQUIRE(h.cancel());  // none had fired
  });
  CHECK(pending >= std::size_t(kKept));
  CHECK(pending < std::size_t(kTimers) / 2);  // 50,000 if nothing had been swept
  CHECK(fired == 0);
}
