// Waiting on many: wait_for, timeout, wait, gather, gather_settled, as_completed, shield,
// with asyncio's edge cases (a timeout racing a result, cancel before start, cancel of
// the waiter from outside, two failures in one gather, reverse completion order).
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spindle/waiting.hpp>

#include "support.hpp"

using namespace spindle;
using test::forever;
using test::until_suspended;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---- wait_for -------------------------------------------------------------------------------

TEST_CASE("wait_for returns the value of a task that finishes in time", "[wait_for]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    CHECK(wait_for(spawn([] { return 7; }), 5s) == 7);
    CHECK(wait_for([] { return std::string("x"); }, 5s) == "x");
    wait_for([] {}, 5s);  // void
    Future<int> f;
    call_soon([f]() mutable { f.set_result(3); });
    CHECK(wait_for(f, 5s) == 3);
    auto failing = spawn([]() -> int { throw std::runtime_error("boom"); });
    CHECK_THROWS_WITH(wait_for(failing, 5s), "boom");
  });
}

TEST_CASE("wait_for at the deadline cancels the task, waits for it to end, throws TimeoutError", "[wait_for]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> cleaned{false};
    auto inner = spawn([&] {
      try {
        sleep(1h);
      } catch (const CancelledError&) {
        sleep(5ms);  // cleanup that itself suspends
        cleaned = true;
        throw;
      }
    });
    const auto t0 = Clock::now();
    CHECK_THROWS_AS(wait_for(inner, 20ms), TimeoutError);
    CHECK(Clock::now() - t0 >= 20ms);
    CHECK(cleaned.load());  // ended before wait_for returned
    CHECK(inner.cancelled());
  });
}

TEST_CASE("wait_for with a zero or negative timeout", "[wait_for]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto done = spawn([] { return 5; });
    done.get();
    CHECK(wait_for(done, 0s) == 5);  // a finished task still gives its result
    CHECK(wait_for(done, -1s) == 5);
    auto pending = spawn(forever);
    CHECK_THROWS_AS(wait_for(pending, 0s), TimeoutError);
    CHECK(pending.cancelled());
    std::atomic<bool> ran{false};
    CHECK_THROWS_AS(wait_for([&] { ran = true; }, -5ms), TimeoutError);
    CHECK_FALSE(ran.load());  // a deadline already passed: fn is not run
    CHECK_THROWS_AS(timeout(0s, [&] { ran = true; }), TimeoutError);
    CHECK_FALSE(ran.load());
  });
}

TEST_CASE("a timeout that fires while the inner task is finishing does not lose its result", "[wait_for]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    // The inner task absorbs the cancellation and returns a value: wait_for returns it.
    auto stubborn = spawn([] {
      try {
        sleep(1h);
      } catch (const CancelledError&) {
        sleep(2ms);
        return 42;
      }
      return 0;
    });
    until_suspended(stubborn);  // inside its try: a cancel before its start would end it
    CHECK(wait_for(stubborn, 10ms) == 42);
    // An exception raised while finishing is the caller's, not a TimeoutError.
    auto failing = spawn([]() -> int {
      try {
        sleep(1h);
      } catch (const CancelledError&) {
        throw std::logic_error("cleanup failed");
      }
      return 0;
    });
    CHECK_THROWS_AS(wait_for(failing, 10ms), std::logic_error);
  });
}

TEST_CASE("wait_for racing completion: every outcome is the value or a cancelled task", "[wait_for][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    int values = 0, timeouts = 0;
    for (int i = 0; i < 300; ++i) {
      auto t = spawn([i] {
        if (i % 3 == 0) yield();
        if (i % 3 == 1) sleep(std::chrono::microseconds(50 + i % 7 * 20));
        return i;
      });
      try {
        const int v = wait_for(t, std::chrono::microseconds(100));
        CHECK(v == i);
        ++values;
      } catch (const TimeoutError&) {
        ++timeouts;
        REQUIRE(t.cancelled());  // a TimeoutError never hides a value
      }
      REQUIRE(t.done());
    }
    CHECK(values + timeouts == 300);
  });
}

TEST_CASE("a task cancelled before it starts: wait_for raises CancelledError, not TimeoutError", "[wait_for]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> ran{false};
    // Pinned to this loop, which is busy running us: it cannot start before the cancel.
    auto t = spawn(TaskOptions{.pinned = true}, [&] { ran = true; });
    t.cancel("early");
    try {
      wait_for(t, 5s);
      FAIL("expected CancelledError");
    } catch (const CancelledError& e) {
      CHECK(e.message() == "early");
    }
    CHECK_FALSE(ran.load());
  });
}

TEST_CASE("cancelling the task in wait_for from outside cancels the inner task too", "[wait_for]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> inner_ended{false};
    std::string inner_msg;
    auto inner = spawn([&] {
      try {
        sleep(1h);
      } catch (const CancelledError& e) {
        inner_msg = e.message();
        yield();
        inner_ended = true;
        throw;
      }
    });
    std::atomic<bool> saw_inner_ended{false};
    auto outer = spawn([&, inner] {
      try {
        wait_for(inner, 1h);
      } catch (const CancelledError&) {
        saw_inner_ended = inner_ended.load();
        throw;
      }
    });
    until_suspended(outer);
    until_suspended(inner);
    outer.cancel("stop it");
    try {
      outer.get();
      FAIL("expected CancelledError");
    } catch (const CancelledError& e) {
      CHECK(e.message() == "stop it");
    }
    CHECK(saw_inner_ended.load());  // the inner had ended before the waiter got its error
    CHECK(inner.cancelled());
    CHECK(inner_msg == "stop it");
  });
}

TEST_CASE("wait_for from a thread outside the runtime", "[wait_for]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  auto quick = rt.spawn([] { return 1; });
  CHECK(wait_for(quick, 5s) == 1);
  auto slow = rt.spawn(forever);
  const auto t0 = Clock::now();
  CHECK_THROWS_AS(wait_for(slow, 15ms), TimeoutError);
  CHECK(Clock::now() - t0 >= 15ms);
  CHECK(slow.cancelled());
}

// ---- timeout ---------------------------------------------------------------------------------

TEST_CASE("timeout runs the block and turns its deadline into TimeoutError", "[timeout]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    int local = 0;
    CHECK(timeout(5s, [&] {
            local = 1;
            return local + 1;
          }) == 2);
    std::atomic<bool> unwound{false};
    struct Flag {
      std::atomic<bool>& f;
      ~Flag() { f = true; }
    };
    const auto t0 = Clock::now();
    CHECK_THROWS_AS(timeout(20ms,
                            [&] {
                              Flag fl{unwound};
                              sleep(1h);
                            }),
                    TimeoutError);
    CHECK(Clock::now() - t0 >= 20ms);
    CHECK(unwound.load());
    // Nested: the inner (shorter) deadline is the inner's TimeoutError; the outer goes on.
    CHECK(timeout(5s, [] {
            try {
              timeout(10ms, [] { sleep(1h); });
            } catch (const TimeoutError&) {
              return 1;
            }
            return 0;
          }) == 1);
    // Nested: the outer (shorter) deadline cancels the inner block: the inner sees
    // CancelledError, the outer caller sees TimeoutError.
    std::atomic<bool> inner_cancelled{false};
    CHECK_THROWS_AS(timeout(10ms,
                            [&] {
                              try {
                                timeout(1h, [] { sleep(1h); });
                              } catch (const CancelledError&) {
                                inner_cancelled = true;
                                throw;
                              }
                            }),
                    TimeoutError);
    CHECK(inner_cancelled.load());
    const auto t1 = Clock::now();
    CHECK_THROWS_AS(timeout_at(Clock::now() + 10ms, [] { sleep(1h); }), TimeoutError);
    CHECK(Clock::now() - t1 >= 10ms);
  });
}

// ---- wait ------------------------------------------------------------------------------------

TEST_CASE("wait on an empty set throws std::invalid_argument", "[wait]") {
  test::Checked harness(1);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::vector<Task<int>> none;
    CHECK_THROWS_AS(wait(none), std::invalid_argument);
  });
}

TEST_CASE("wait ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION", "[wait]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> gate;
    std::vector<Task<int>> ts;
    ts.push_back(spawn([] { return 1; }));
    ts.push_back(spawn([gate]() mutable {
      gate.get();
      return 2;
    }));
    // FIRST_COMPLETED: returns with the quick one done, the gated one pending (and alive).
    auto [done1, pending1] = wait(ts, WaitOptions{.return_when = FIRST_COMPLETED});
    REQUIRE(done1.size() == 1);
    CHECK(done1[0] == ts[0]);
    REQUIRE(pending1.size() == 1);
    CHECK_FALSE(pending1[0].done());
    // FIRST_EXCEPTION: a cancelled task is not an exception; a failing one is.
    auto cancelled = spawn([] { return 0; });
    cancelled.cancel();
    auto failing = spawn([gate]() mutable -> int {
      sleep(5ms);
      throw std::runtime_error("x");
    });
    std::vector<Task<int>> mix{cancelled, failing, ts[1]};
    auto [done2, pending2] = wait(mix, WaitOptions{.return_when = FIRST_EXCEPTION});
    CHECK(failing.done());
    CHECK(cancelled.done());
    CHECK(done2.size() == 2);
    REQUIRE(pending2.size() == 1);
    CHECK(pending2[0] == ts[1]);
    CHECK_THROWS_AS(failing.result(), std::runtime_error);
    // ALL_COMPLETED.
    gate.set_result();
    auto [done3, pending3] = wait(ts);
    CHECK(done3.size() == 2);
    CHECK(pending3.empty());
    CHECK(ts[1].result() == 2);
  });
}

TEST_CASE("wait with a timeout returns what is pending without cancelling it", "[wait]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto slow = spawn(forever);
    auto quick = spawn([] {});
    const auto t0 = Clock::now();
    auto r = wait({Task<>(slow), Task<>(quick), Task<>(quick)}, WaitOptions{.timeout = 20ms});
    CHECK(Clock::now() - t0 >= 20ms);
    CHECK(r.done.size() == 1);  // the repeated handle counts once
    REQUIRE(r.pending.size() == 1);
    CHECK_FALSE(slow.done());
    auto r0 = wait({Task<>(slow)}, WaitOptions{.timeout = 0s});
    CHECK(r0.pending.size() == 1);
    slow.cancel();
    CHECK_THROWS_AS(slow.get(), CancelledError);
  });
}

TEST_CASE("cancelling a task in wait leaves the awaited tasks alone", "[wait]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto child = spawn(forever);
    auto waiter = spawn([child] { (void)wait(std::vector<Task<>>{child}); });
    until_suspended(waiter);
    waiter.cancel();
    CHECK_THROWS_AS(waiter.get(), CancelledError);
    CHECK_FALSE(child.done());
    child.cancel();
    CHECK_THROWS_AS(child.get(), CancelledError);
  });
}

// ---- gather --------------------------------------------------------------------------------

TEST_CASE("gather of handles and callables returns a tuple in argument order", "[gather]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto a = spawn([] {
      sleep(10ms);
      return 1;
    });
    Future<std::string> f;
    call_soon([f]() mutable { f.set_result("two"); });
    auto [x, y, z, w] = gather(
        a, f, [] { return 3.5; }, [] {});
    CHECK(x == 1);
    CHECK(y == "two");
    CHECK(z == 3.5);
    CHECK(w == std::monostate{});
  });
}

TEST_CASE("gather over a range keeps input order when tasks finish in reverse", "[gather]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::vector<Task<int>> ts;
    for (int i = 0; i < 8; ++i)
      ts.push_back(spawn([i] {
        sleep(std::chrono::milliseconds(2 * (8 - i)));
        return i;
      }));
    const auto v = gather(ts);
    REQUIRE(v.size() == 8);
    for (int i = 0; i < 8; ++i) CHECK(v[i] == i);
    CHECK(gather(std::vector<Task<int>>{}).empty());
    std::vector<Task<>> voids{spawn([] {}), spawn([] {})};
    CHECK(gather(voids).size() == 2);
  });
}

TEST_CASE("gather where two children fail: the first failure propagates, the rest keep running", "[gather]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  {
    test::Checked harness(test::opts(n, &reports), {.reports = true});  // the test checks its reports
    Runtime& rt = harness.rt;
    rt.block_on([] {
      Future<> second_go, slow_go;
      std::atomic<bool> slow_finished{false};
      std::vector<Task<int>> ts;
      ts.push_back(spawn([second_go]() mutable -> int {
        second_go.get();
        throw std::runtime_error("second");
      }));
      ts.push_back(spawn([]() -> int {
        sleep(2ms);
        throw std::runtime_error("first");
      }));
      ts.push_back(spawn([&, slow_go]() mutable {
        slow_go.get();
        slow_finished = true;
        return 3;
      }));
      try {
        gather(ts);
        FAIL("expected the first failure");
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "first");
      }
      CHECK_FALSE(ts[0].done());  // not cancelled: still waiting
      CHECK_FALSE(ts[2].done());
      second_go.set_result();
      slow_go.set_result();
      CHECK(ts[2].get() == 3);
      CHECK(slow_finished.load());
      while (!ts[0].done()) yield();
    });
  }
  // asyncio marks the later failure retrieved: nothing reported.
  CHECK(reports.count(Report::Kind::unretrieved_exception) == 0);
}

TEST_CASE("gather: a cancelled child raises CancelledError in a caller that was not cancelled", "[gather]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto c = spawn(forever);
    auto ok = spawn([] { return 1; });
    call_soon([c]() mutable { c.cancel("child"); });
    CHECK_THROWS_AS(gather(std::vector<Task<>>{c, ok}), CancelledError);
    sleep(1ms);  // the caller itself is not cancelled: it goes on
    CHECK(ok.get() == 1);
  });
}

TEST_CASE("cancelling a gather's caller cancels every child and waits for them", "[gather]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> ended{0};
    std::vector<Task<>> kids;
    for (int i = 0; i < 5; ++i)
      kids.push_back(spawn([&] {
        try {
          sleep(1h);
        } catch (const CancelledError&) {
          yield();
          ++ended;
          throw;
        }
      }));
    for (auto& k : kids) until_suspended(k);  // all started, so each runs its handler
    auto done_kid = spawn([] {});
    done_kid.get();
    kids.push_back(done_kid);
    std::atomic<int> ended_seen{-1};
    auto g = spawn([&, kids] {
      try {
        gather(kids);
      } catch (const CancelledError&) {
        ended_seen = ended.load();
        throw;
      }
    });
    until_suspended(g);
    g.cancel("all of them");
    CHECK_THROWS_AS(g.get(), CancelledError);
    CHECK(ended_seen == 5);
    for (int i = 0; i < 5; ++i) CHECK(kids[i].cancelled());
    CHECK_FALSE(done_kid.cancelled());
  });
}

TEST_CASE("gather_settled returns every outcome in input order", "[gather]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::vector<Task<int>> ts;
    ts.push_back(spawn([] {
      sleep(3ms);
      return 1;
    }));
    ts.push_back(spawn([]() -> int { throw std::runtime_error("bad"); }));
    ts.push_back(spawn([] {
      sleep(1h);
      return 0;
    }));
    ts.push_back(spawn([] { return 4; }));
    call_later(5ms, [t = ts[2]]() mutable { t.cancel("gone"); });
    auto rs = gather_settled(ts);
    REQUIRE(rs.size() == 4);
    CHECK(rs[0].ok());
    CHECK(rs[0].value() == 1);
    CHECK_FALSE(rs[1].ok());
    CHECK_THROWS_WITH(rs[1].value(), "bad");
    CHECK_FALSE(rs[1].cancelled());
    CHECK_FALSE(rs[2].ok());
    CHECK(rs[2].cancelled());
    CHECK(rs[3].value() == 4);
    CHECK(rs[3].error() == nullptr);
    std::vector<Task<>> voids{spawn([] {})};
    auto rv = gather_settled(voids);
    CHECK(rv[0].ok());
  });
}

// ---- as_completed ----------------------------------------------------------------------------

TEST_CASE("as_completed yields tasks in the order they finish (reverse of input)", "[as_completed]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    constexpr int k = 6;
    std::vector<Future<>> gates(k);
    std::vector<Task<int>> ts;
    for (int i = 0; i < k; ++i)
      ts.push_back(spawn([i, g = gates[i]]() mutable {
        g.get();
        return i;
      }));
    // Open the gates from the last to the first, each once the previous task ended, but
    // only once as_completed watches them all (tasks already done when it starts come
    // in input order, as in asyncio).
    Future<> go;
    auto driver = spawn([&] {
      go.get();
      for (int i = k - 1; i >= 0; --i) {
        gates[i].set_result();
        (void)wait(std::vector<Task<int>>{ts[i]});
      }
    });
    std::vector<int> order;
    auto ac = as_completed(ts);
    go.set_result();
    for (auto t : ac) order.push_back(t.get());
    driver.get();
    CHECK(order == std::vector<int>{5, 4, 3, 2, 1, 0});
  });
}

TEST_CASE("as_completed keeps causal order: a task woken by another's completion comes after it", "[as_completed]") {
  // second waits for first, third for second: whatever loops they finish on, as_completed
  // must yield first, second, third (it hears of a completion before anyone it wakes runs).
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    for (int round = 0; round < 50; ++round) {
      Future<> go;
      auto first = spawn([go]() mutable {
        go.get();
        return 1;
      });
      auto second = spawn([first]() mutable { return first.get() + 1; });
      auto third = spawn([second]() mutable { return second.get() + 1; });
      auto ac = as_completed(std::vector<Task<int>>{third, first, second});
      go.set_result();
      std::vector<int> order;
      for (auto t : ac) order.push_back(t.get());
      INFO("round " << round);
      REQUIRE(order == std::vector<int>{1, 2, 3});
    }
  });
}

TEST_CASE("gather raises the failure that came first even when a later one was caused by it", "[gather]") {
  // second fails because first did (it saw first done): gather must raise first's error,
  // whichever loops the two finish on.
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    for (int round = 0; round < 50; ++round) {
      Future<> go;
      auto first = spawn([go]() mutable -> int {
        go.get();
        throw std::runtime_error("first");
      });
      auto second = spawn([first]() mutable -> int {
        try {
          (void)first.get();
        } catch (const std::runtime_error&) {
        }
        throw std::runtime_error("second");
      });
      // Input order first, second: if both are done before gather looks, input order
      // also gives "first"; only a completion recorded out of causal order gives "second".
      auto g = spawn([first, second] { return gather(std::vector<Task<int>>{first, second}); });
      go.set_result();
      INFO("round " << round);
      REQUIRE_THROWS_WITH(g.get(), "first");
    }
  });
}

TEST_CASE("as_completed: finished ones first, then TimeoutError at the deadline", "[as_completed]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto done = spawn([] { return 1; });
    done.get();
    auto never = spawn([] {
      sleep(1h);
      return 2;
    });
    const auto t0 = Clock::now();  // before the deadline is set
    auto ac = as_completed(std::vector<Task<int>>{never, done}, 20ms);
    CHECK(ac.size() == 2);
    auto it = ac.begin();
    CHECK((*it).get() == 1);
    CHECK_THROWS_AS(++it, TimeoutError);
    CHECK(Clock::now() - t0 >= 20ms);
    CHECK_FALSE(never.done());  // not cancelled
    never.cancel();
    int count = 0;
    for (auto t : as_completed(std::vector<Task<int>>{})) count += t.get();
    CHECK(count == 0);
  });
}

// ---- shield ----------------------------------------------------------------------------------

TEST_CASE("shield: cancelling the waiter leaves the inner task running", "[shield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> go;
    auto inner = spawn([go]() mutable {
      go.get();
      return 9;
    });
    auto waiter = spawn([inner] { return shield(inner); });
    until_suspended(waiter);
    waiter.cancel("waiter only");
    try {
      waiter.get();
      FAIL("expected CancelledError");
    } catch (const CancelledError& e) {
      CHECK(e.message() == "waiter only");
    }
    CHECK_FALSE(inner.done());
    go.set_result();
    CHECK(inner.get() == 9);
    // A shielded task cancelled by someone else: the waiter gets CancelledError.
    auto victim = spawn(forever);
    call_soon([victim]() mutable { victim.cancel(); });
    CHECK_THROWS_AS(shield(victim), CancelledError);
    CHECK(shield([] { return 1; }) == 1);
  });
}

// ---- from outside the runtime ----------------------------------------------------------------

TEST_CASE("gather, wait and as_completed from a thread outside the runtime", "[gather][wait][as_completed]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  std::vector<Task<int>> ts;
  for (int i = 0; i < 4; ++i)
    ts.push_back(rt.spawn([i] {
      sleep(std::chrono::milliseconds(i));
      return i;
    }));
  CHECK(gather(ts) == std::vector<int>{0, 1, 2, 3});
  CHECK(wait(ts).done.size() == 4);
  int sum = 0;
  for (auto t : as_completed(ts)) sum += t.get();
  CHECK(sum == 6);
}

TEST_CASE("many waiters over many tasks under churn", "[gather][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  const long total = rt.block_on([] {
    std::vector<Task<long>> groups;
    for (int g = 0; g < 16; ++g)
      groups.push_back(spawn([g] {
        std::vector<Task<long>> ts;
        for (int i = 0; i < 64; ++i)
          ts.push_back(spawn([g, i] {
            if ((g + i) % 3 == 0) yield();
            return long(i);
          }));
        long s = 0;
        if (g % 3 == 0) {
          for (long v : gather(ts)) s += v;
        } else if (g % 3 == 1) {
          for (auto t : as_completed(ts)) s += t.get();
        } else {
          (void)wait(ts, WaitOptions{.return_when = FIRST_COMPLETED});
          for (auto& r : gather_settled(ts)) s += r.value();
        }
        return s;
      }));
    long s = 0;
    for (long v : gather(groups)) s += v;
    return s;
  });
  CHECK(total == 16 * (63 * 64 / 2));
}
