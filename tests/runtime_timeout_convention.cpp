// One timeout convention for the whole API (TimeLimit, time_limit.hpp), asyncio's: none
// waits until done; zero or negative has already passed, after the one look asyncio
// takes; a duration too large for the clock is as none (no overflow: hours::max() is
// checked at compile time below, and UBSan runs the rest). Here: the TimeLimit type
// itself and every runtime call that takes one (wait_for on a task, a future and a
// callable, timeout, timeout_at, wait, as_completed, Runtime::shutdown's grace,
// DumpOptions::wait). The I/O and executor calls have files of their own
// (io_timeout_convention.cpp, executors_timeout_convention.cpp).
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <spindle/monitor.hpp>
#include <spindle/time_limit.hpp>

#include "support.hpp"
#include "timeout_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

using test::expired;
using test::show;
using test::unlimited;

// A task that ends with `v` only after a few turns of the loops and a short real wait,
// so that it is not done when the call under test begins: an "already passed" limit
// would time out on it.
Task<int> later(int v) {
  return spawn([v] {
    for (int i = 0; i < 10; ++i) yield();
    sleep(5ms);
    return v;
  });
}

}  // namespace

// ---- the type -------------------------------------------------------------------------

TEST_CASE("TimeLimit converts every duration without overflow, and nullopt to none", "[timeout]") {
  // At compile time: an overflow here would not compile (and UBSan would see none).
  static_assert(!TimeLimit{}.has_value());
  static_assert(!TimeLimit(std::nullopt).has_value());
  static_assert(*TimeLimit(std::chrono::hours::max()) == nanoseconds::max());
  static_assert(*TimeLimit(std::chrono::hours::min()) == nanoseconds::min());
  static_assert(*TimeLimit(std::chrono::milliseconds::max()) == nanoseconds::max());
  static_assert(*TimeLimit(std::chrono::duration<uint64_t>(UINT64_MAX)) == nanoseconds::max());
  static_assert(*TimeLimit(std::chrono::duration<uint64_t, std::nano>(UINT64_MAX)) == nanoseconds::max());
  static_assert(*TimeLimit(3s) == 3'000'000'000ns);
  static_assert(*TimeLimit(std::chrono::duration<int64_t, std::pico>(2500)) == 2ns);
  static_assert(*TimeLimit(std::chrono::duration<double>(1.5)) == 1500ms);
  static_assert(*TimeLimit(std::chrono::duration<double>(1e300)) == nanoseconds::max());
  static_assert(*TimeLimit(std::chrono::duration<double>(-1e300)) == nanoseconds::min());
  static_assert(*TimeLimit(std::chrono::duration<float, std::ratio<3600>>(1e30f)) == nanoseconds::max());
  static_assert(*TimeLimit(std::chrono::duration<double>(-0.25e-9)) == 0ns);
  static_assert(TimeLimit(0s).expired() && TimeLimit(-1ns).expired() && !TimeLimit(1ns).expired());
  static_assert(!TimeLimit{}.expired() && !TimeLimit(std::chrono::hours::max()).expired());
  static_assert(TimeLimit(std::optional<std::chrono::seconds>{}) == TimeLimit{});
  static_assert(TimeLimit(std::optional<std::chrono::seconds>{2s}) == TimeLimit(2000ms));
  // A NaN (not a constant expression everywhere): expired, never "no limit".
  const TimeLimit nan = std::chrono::duration<double>(std::nan(""));
  CHECK(nan.has_value());
  CHECK(nan.expired());
  CHECK_THROWS_AS(TimeLimit{}.value(), std::bad_optional_access);
  // Deadlines: none and huge give "none" (0), zero and negative a deadline already passed.
  for (TimeLimit t : unlimited()) {
    INFO(show(t));
    CHECK(detail::deadline_of(t) == 0);
  }
  for (TimeLimit t : expired()) {
    INFO(show(t));
    const int64_t dl = detail::deadline_of(t);
    CHECK(dl != 0);
    CHECK(dl <= detail::monotonic_ns());
  }
  CHECK(detail::deadline_of(1h) > detail::monotonic_ns());
}

// ---- wait_for -------------------------------------------------------------------------

TEST_CASE("wait_for on a task: none and huge wait for it, zero and negative give it one look", "[timeout][wait_for]") {
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      CHECK(wait_for(later(7), t) == 7);
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      // Already done: its value, or its exception (not TimeoutError).
      auto done = spawn([] { return 1; });
      done.get();
      CHECK(wait_for(done, t) == 1);
      auto failed = spawn([]() -> int { throw std::runtime_error("bad"); });
      (void)wait(std::vector<Task<int>>{failed});
      CHECK_THROWS_AS(wait_for(failed, t), std::runtime_error);
      // Not done: cancelled, joined, TimeoutError.
      auto pending = spawn([] {
        test::forever();
        return 0;
      });
      CHECK_THROWS_AS(wait_for(pending, t), TimeoutError);
      CHECK(pending.done());
      CHECK(pending.cancelled());
    }
  });
}

TEST_CASE("wait_for on a future follows the same convention", "[timeout][wait_for]") {
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      Future<int> f;
      auto setter = spawn([f]() mutable {
        sleep(5ms);
        f.set_result(3);
      });
      CHECK(wait_for(f, t) == 3);
      setter.get();
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      Future<int> ready;
      ready.set_result(4);
      CHECK(wait_for(ready, t) == 4);
      Future<int> never;
      CHECK_THROWS_AS(wait_for(never, t), TimeoutError);
      CHECK(never.cancelled());
    }
  });
}

TEST_CASE("wait_for and timeout on a callable: none and huge run it, zero and negative never start it",
          "[timeout][wait_for]") {
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    auto body = [] {
      sleep(5ms);
      return 9;
    };
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      CHECK(wait_for(body, t) == 9);
      CHECK(timeout(t, body) == 9);
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      bool ran = false;
      CHECK_THROWS_AS(wait_for([&] { ran = true; }, t), TimeoutError);
      CHECK_THROWS_AS(timeout(t, [&] { ran = true; }), TimeoutError);
      CHECK_FALSE(ran);
    }
  });
}

TEST_CASE("timeout_at: nullopt and time_point::max() are none, a past point has passed", "[timeout]") {
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    using Clock = std::chrono::steady_clock;
    auto body = [] {
      sleep(5ms);
      return 5;
    };
    CHECK(timeout_at(std::nullopt, body) == 5);
    CHECK(timeout_at(Clock::time_point::max(), body) == 5);
    CHECK(timeout_at(Clock::now() + 1h, body) == 5);
    bool ran = false;
    for (Clock::time_point p : {Clock::now(), Clock::now() - 1s, Clock::time_point::min(), Clock::time_point{}}) {
      CHECK_THROWS_AS(timeout_at(p, [&] { ran = true; }), TimeoutError);
    }
    CHECK_FALSE(ran);
  });
}

// ---- wait and as_completed --------------------------------------------------------------

TEST_CASE("wait: none and huge wait for all, zero and negative report what is done at once", "[timeout][wait]") {
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      auto r = wait(std::vector<Task<int>>{later(1), later(2)}, {.timeout = t});
      CHECK(r.done.size() == 2);
      CHECK(r.pending.empty());
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      auto done = spawn([] { return 1; });
      done.get();
      auto pending = spawn([] {
        test::forever();
        return 0;
      });
      auto r = wait(std::vector<Task<int>>{pending, done}, {.timeout = t});
      REQUIRE(r.done.size() == 1);
      CHECK(r.done[0] == done);
      REQUIRE(r.pending.size() == 1);
      CHECK_FALSE(pending.done());  // wait never cancels
      pending.cancel();
      CHECK_THROWS_AS(pending.get(), CancelledError);
    }
  });
}

TEST_CASE("as_completed: none and huge yield all, zero and negative yield what is done, then time out",
          "[timeout][as_completed]") {
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    for (TimeLimit t : unlimited()) {
      INFO(show(t));
      int sum = 0;
      for (auto task : as_completed(std::vector<Task<int>>{later(1), later(2)}, t)) sum += task.get();
      CHECK(sum == 3);
    }
    for (TimeLimit t : expired()) {
      INFO(show(t));
      auto done = spawn([] { return 1; });
      done.get();
      auto pending = spawn([] {
        test::forever();
        return 0;
      });
      auto ac = as_completed(std::vector<Task<int>>{pending, done}, t);
      auto first = ac.next();
      REQUIRE(first.has_value());
      CHECK(*first == done);
      CHECK_THROWS_AS(ac.next(), TimeoutError);
      CHECK_FALSE(pending.done());  // nothing is cancelled
      pending.cancel();
      CHECK_THROWS_AS(pending.get(), CancelledError);
    }
  });
}

// ---- Runtime::shutdown's grace and DumpOptions::wait -------------------------------------

TEST_CASE("shutdown's grace: none and huge wait for a task that ends late, zero and negative report it",
          "[timeout][shutdown]") {
  const unsigned n = SPINDLE_WORKERS();
  for (TimeLimit grace : unlimited()) {
    INFO(show(grace) << " over " << n << " workers");
    test::Reports reports;
    std::optional<Task<int>> t;
    {
      Runtime rt(test::opts(n, &reports));
      // Catches shutdown's cancel and ends on its own a little later, with a value.
      t = rt.spawn([] {
        try {
          test::forever();
        } catch (const CancelledError&) {
        }
        for (int i = 0; i < 10; ++i) yield();
        return 11;
      });
      rt.block_on([&] { test::until_suspended(*t); });
      rt.shutdown(grace);
    }
    CHECK(t->get() == 11);  // waited for, not abandoned
    CHECK(reports.count(Report::Kind::task_would_not_end) == 0);
  }
  for (TimeLimit grace : expired()) {
    INFO(show(grace) << " over " << n << " workers");
    test::Reports reports;
    std::optional<Task<int>> t;
    {
      Runtime rt(test::opts(n, &reports));
      // Catches the first cancel and waits again: only the second, sticky one (after
      // the report) can end it, so it is certainly alive when the grace is looked at.
      t = rt.spawn([] {
        try {
          test::forever();
        } catch (const CancelledError&) {
        }
        test::forever();
        return 0;
      });
      rt.block_on([&] { test::until_suspended(*t); });
      rt.shutdown(grace);
      CHECK(reports.count(Report::Kind::task_would_not_end) >= 1);
      // With nothing alive, an expired grace has nothing to report.
      Runtime idle(test::opts(n, &reports));
      const std::size_t before = reports.count(Report::Kind::task_would_not_end);
      idle.shutdown(grace);
      CHECK(reports.count(Report::Kind::task_would_not_end) == before);
    }
    CHECK(t->done());
  }
}

TEST_CASE("task_infos lists a suspended task whatever DumpOptions::wait is", "[timeout][monitor]") {
  test::Checked h(SPINDLE_WORKERS());
  h.rt.block_on([] {
    auto sleeper = spawn(TaskOptions{.name = "sleeper"}, test::forever);
    test::until_suspended(sleeper);
    std::vector<TimeLimit> limits = unlimited();
    for (TimeLimit t : expired()) limits.push_back(t);
    for (TimeLimit t : limits) {
      INFO(show(t));
      bool seen = false;
      for (const TaskInfo& i : task_infos(DumpOptions{.wait = t})) seen = seen || i.name == "sleeper";
      CHECK(seen);  // started tasks come from the registry, which needs no answer
    }
    sleeper.cancel();
    CHECK_THROWS_AS(sleeper.get(), CancelledError);
  });
}
