// Deadlines at the edges: a duration too large for the clock means "never"
// (not "at once", which is what a wrapped-around now + d gave), zero and negative
// durations are already due; timers armed from outside around shutdown are released;
// TaskOptions::loop out of range is refused.
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spindle/detail/deadline.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

// A duration that fits in int64 nanoseconds, but not once added to now: it overflows
// only in the deadline arithmetic (the clock's now is the machine's uptime, > 0).
nanoseconds overflows_with_now() {
  const int64_t now = detail::monotonic_ns();
  return nanoseconds(INT64_MAX - now / 2);
}

// The huge nanosecond durations every API takes.
std::vector<nanoseconds> huge_ns() { return {nanoseconds::max(), overflows_with_now()}; }

// Lets other work proceed for a while: yields, then a short real wait on another timer.
// A deadline computed as "already passed" would have fired by then.
void let_others_run() {
  for (int i = 0; i < 50; ++i) yield();
  sleep(20ms);
  for (int i = 0; i < 50; ++i) yield();
}

// Starts body in a task, checks it is still waiting after others ran, cancels it and
// checks it ends cancelled.
template <class F>
void still_waiting_then_cancelled(F body) {
  std::atomic<bool> returned{false};
  auto t = spawn([&] {
    body();
    returned = true;
  });
  test::until_suspended(t);
  let_others_run();
  CHECK_FALSE(t.done());
  CHECK_FALSE(returned.load());
  t.cancel("enough");
  CHECK_THROWS_AS(t.get(), CancelledError);
  CHECK_FALSE(returned.load());
}

}  // namespace

TEST_CASE("deadline helpers saturate instead of overflowing", "[deadlines]") {
  // The pure parts, at compile time (an overflow there would not compile).
  static_assert(detail::saturating_ns(std::chrono::hours::max()) == nanoseconds::max());
  static_assert(detail::saturating_ns(std::chrono::hours::min()) == nanoseconds::min());
  static_assert(detail::saturating_ns(std::chrono::milliseconds::max()) == nanoseconds::max());
  static_assert(detail::saturating_ns(std::chrono::seconds(3)) == 3s);
  static_assert(detail::saturating_ns(std::chrono::duration<uint64_t, std::nano>(UINT64_MAX)) == nanoseconds::max());
  static_assert(detail::deadline_from(100, nanoseconds::max()) == 0);  // none
  static_assert(detail::deadline_from(100, nanoseconds(INT64_MAX - 100)) == INT64_MAX);
  static_assert(detail::deadline_from(100, nanoseconds(INT64_MAX - 99)) == 0);
  static_assert(detail::deadline_from(100, 0ns) == 100);  // already due
  static_assert(detail::deadline_from(100, -5s) == 100);  // already due
  static_assert(detail::deadline_from(0, 0ns) == 1);      // due, and never "none"
  static_assert(detail::poll_ms(1) == 1 && detail::poll_ms(1'000'000) == 1 && detail::poll_ms(INT64_MAX) == INT_MAX);
  CHECK(detail::deadline_after(nanoseconds::max()) == 0);
  CHECK(detail::deadline_after(overflows_with_now()) == 0);
  CHECK(detail::deadline_of(std::nullopt) == 0);               // no limit
  CHECK(detail::deadline_of(std::chrono::hours::max()) == 0);  // too large: none
  CHECK(detail::deadline_of(0ns) != 0);                        // passed, never "none"
  CHECK(detail::deadline_of(-1s) != 0);
  CHECK(detail::deadline_at(std::chrono::steady_clock::time_point::max()) == 0);
  CHECK(detail::deadline_at(std::chrono::steady_clock::time_point::min()) == 1);
}

TEST_CASE("sleep with a huge duration waits until cancelled", "[deadlines]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    for (nanoseconds d : huge_ns()) still_waiting_then_cancelled([d] { sleep(d); });
    still_waiting_then_cancelled([] { sleep(std::chrono::hours::max()); });
    still_waiting_then_cancelled([] { sleep(std::chrono::milliseconds::max()); });
    still_waiting_then_cancelled([] { sleep_until(std::chrono::steady_clock::time_point::max()); });
  });
}

TEST_CASE("sleep with a zero or negative duration returns at once", "[deadlines]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    sleep(0ns);
    sleep(-5ms);
    sleep(nanoseconds::min());
    sleep(std::chrono::hours::min());
    sleep_until(std::chrono::steady_clock::time_point::min());
    sleep_until(std::chrono::steady_clock::time_point{});
  });
  // A foreign thread too (it would block for ever otherwise).
  sleep(0ns);
  sleep(-1s);
  sleep(std::chrono::hours::min());
}

TEST_CASE("a foreign thread's sleep with a huge duration does not return", "[deadlines]") {
  // Nothing can cancel a foreign thread's sleep, so the sleepers are detached: each
  // only touches its own flag, which it shares, and the process ends them at exit.
  std::vector<std::shared_ptr<std::atomic<bool>>> returned;
  auto start = [&](auto sleeper) {
    auto flag = std::make_shared<std::atomic<bool>>(false);
    returned.push_back(flag);
    std::thread([flag, sleeper] {
      sleeper();
      flag->store(true);
    }).detach();
  };
  for (nanoseconds d : huge_ns()) start([d] { sleep(d); });
  start([] { sleep(std::chrono::hours::max()); });
  start([] { sleep_until(std::chrono::steady_clock::time_point::max()); });
  std::this_thread::sleep_for(50ms);  // a wrapped deadline returns in microseconds
  for (auto& f : returned) CHECK_FALSE(f->load());
}

TEST_CASE("call_later with a huge duration never fires and can be cancelled", "[deadlines]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  Runtime& rt = q.rt;
  auto token = std::make_shared<int>(0);
  std::atomic<int> fired{0};
  std::vector<TimerHandle> hs;
  // From a foreign thread (Runtime::call_later) ...
  for (nanoseconds d : huge_ns()) hs.push_back(rt.call_later(d, [&fired, token] { ++fired; }));
  hs.push_back(rt.call_later(std::chrono::hours::max(), [&fired, token] { ++fired; }));
  rt.block_on([&] {
    // ... and inside the runtime (call_later, call_at).
    for (nanoseconds d : huge_ns()) hs.push_back(call_later(d, [&fired, token] { ++fired; }));
    hs.push_back(call_later(std::chrono::hours::max(), [&fired, token] { ++fired; }));
    hs.push_back(call_at(std::chrono::steady_clock::time_point::max(), [&fired, token] { ++fired; }));
    // A timer armed after them, due now, fires: theirs would have fired first.
    std::atomic<bool> soon{false};
    auto probe = rt.call_later(0ns, [&] { soon = true; });
    while (!soon) yield();
    let_others_run();
  });
  CHECK(fired == 0);
  for (TimerHandle& h : hs) {
    CHECK(h.when() == std::chrono::steady_clock::time_point::max());
    CHECK(h.cancel());  // it was still armed
    CHECK(h.cancelled());
  }
  CHECK(token.use_count() == 1);  // cancel destroyed every callback
}

TEST_CASE("call_later with a zero or negative duration fires soon", "[deadlines]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  std::atomic<int> fired{0};
  q.rt.call_later(0ns, [&] { ++fired; });
  q.rt.call_later(-1s, [&] { ++fired; });
  q.rt.call_later(nanoseconds::min(), [&] { ++fired; });
  q.rt.call_later(std::chrono::hours::min(), [&] { ++fired; });
  q.rt.block_on([&] {
    call_later(-5ms, [&] { ++fired; });
    call_at(std::chrono::steady_clock::time_point::min(), [&] { ++fired; });
    while (fired < 6) yield();
  });
  CHECK(fired == 6);
}

TEST_CASE("wait_for, timeout and timeout_at with a huge duration wait until cancelled", "[deadlines]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    for (nanoseconds d : huge_ns()) {
      still_waiting_then_cancelled([d] { wait_for(spawn(test::forever), d); });
      still_waiting_then_cancelled([d] { timeout(d, test::forever); });
    }
    still_waiting_then_cancelled([] { timeout_at(std::chrono::steady_clock::time_point::max(), test::forever); });
    CHECK_THROWS_AS(timeout_at(std::chrono::steady_clock::time_point::min(), test::forever), TimeoutError);
  });
}

// ---- timers armed from outside around shutdown ------------------

TEST_CASE("timers armed from foreign threads around shutdown are all released", "[deadlines][shutdown]") {
  const unsigned n = SPINDLE_WORKERS();
  for (int round = 0; round < 3; ++round) {
    auto token = std::make_shared<int>(0);  // every callback captures a copy
    std::atomic<int> ran{0}, armed{0}, refused{0};
    std::vector<TimerHandle> kept;  // some handles of far-off timers outlive the shutdown
    std::mutex kept_mu;
    {
      Runtime rt(test::opts(n));
      std::atomic<bool> go{false};
      std::vector<std::thread> threads;
      for (int k = 0; k < 4; ++k) {
        threads.emplace_back([&, k] {
          while (!go) std::this_thread::yield();
          for (int i = 0; i < 250; ++i) {
            try {
              // Mostly far-off deadlines (never due), some due at once.
              const auto d = i % 5 == 0 ? nanoseconds(0) : nanoseconds(std::chrono::hours(1));
              TimerHandle h = rt.call_later(d, [token, &ran] { ++ran; });
              ++armed;
              if (d > 0ns && (i + k) % 7 == 0) {
                std::lock_guard lk(kept_mu);
                kept.push_back(std::move(h));
              }
            } catch (const RuntimeError&) {
              ++refused;  // shutdown had begun
            }
          }
        });
      }
      go = true;
      while (armed + refused < 400) std::this_thread::yield();  // shut down mid-stream
      rt.shutdown();
      for (auto& t : threads) t.join();
      // Shutdown released what never fired, even with handles still held.
      CHECK(token.use_count() == 1);
      for (TimerHandle& h : kept) CHECK(h.cancelled());  // never fired: cancelled by the stop
      // After shutdown, arming from outside is refused, and the callback released.
      CHECK_THROWS_AS(rt.call_later(1h, [token] {}), RuntimeError);
      CHECK(token.use_count() == 1);
    }
    CHECK(armed + refused == 1000);
    CHECK(token.use_count() == 1);
  }
}

// ---- TaskOptions::loop --------------------------------------------

TEST_CASE("spawn refuses a TaskOptions::loop out of range", "[deadlines][pinned]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  for (int bad : {-2, -5, INT_MIN, int(n), int(n) + 1, INT_MAX}) {
    INFO("loop " << bad);
    for (bool pinned : {true, false}) {
      try {
        q.rt.spawn(TaskOptions{.pinned = pinned, .loop = bad}, [] {});
        FAIL("accepted");
      } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        CHECK(what.find(std::to_string(bad)) != std::string::npos);
        CHECK(what.find(std::to_string(n) + " loops") != std::string::npos);
      }
    }
    q.rt.block_on([&] {  // from inside too
      CHECK_THROWS_AS(spawn(TaskOptions{.pinned = true, .loop = bad}, [] {}), std::invalid_argument);
    });
  }
  // Valid indexes (and -1) still work, and pin.
  for (int loop = -1; loop < int(n); ++loop) {
    auto t = q.rt.spawn(TaskOptions{.pinned = true, .loop = loop}, [] { return 7; });
    CHECK(t.get() == 7);
  }
}
