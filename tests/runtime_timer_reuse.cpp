// Timed waits that end early reuse their task's timer entry (timer_heap.hpp, "Reused wake
// entries"): the heap does not grow with them, a later, longer wait still waits its full
// time, a shorter one after a longer one is not held to the longer key, and waits handed
// between loops, cancelled, or timed out leave nothing behind.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <vector>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

std::size_t timers_pending(Runtime& rt) {
  std::size_t n = 0;
  for (const auto& w : rt.metrics().workers) n += w.timers_pending;
  return n;
}

// A future completed by another task after a yield: wait_for on it ends notified.
int served(int v) {
  Future<int> f;
  auto setter = spawn([f, v]() mutable {
    yield();
    f.set_result(v);
  });
  const int got = wait_for(f, 10s);
  setter.get();
  return got;
}

}  // namespace

TEST_CASE("notified timed waits of one task reuse one timer entry", "[timers][reuse]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    // An armed timer on every loop, due before any of the waits below: it stays at the
    // top of each heap, so entries cancelled beneath it stay there until a sweep (every
    // 1024 pushes at the earliest) instead of being dropped as they reach the top.
    std::vector<TimerHandle> anchors(n);
    std::vector<Task<>> setup;
    for (unsigned l = 0; l < n; ++l)
      setup.push_back(
          spawn(TaskOptions{.pinned = true, .loop = int(l)}, [&anchors, l] { anchors[l] = call_later(9s, [] {}); }));
    for (auto& t : setup) t.get();
    long sum = 0;
    for (int i = 0; i < 1000; ++i) sum += served(i);
    CHECK(sum == 999L * 1000 / 2);
    // Without reuse each wait left a cancelled entry behind: a thousand here. With it,
    // the anchors and this task's one entry.
    CHECK(timers_pending(rt) <= n + 4);
    for (auto& a : anchors) a.cancel();
  });
}

TEST_CASE("a shorter wait after a longer one is not held to the longer key", "[timers][reuse]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    for (int i = 0; i < 10; ++i) CHECK(served(i) == i);  // the kept entry is keyed ~10 s ahead
    Future<int> never;
    const auto t0 = Clock::now();
    CHECK_THROWS_AS(wait_for(never, 50ms), TimeoutError);  // times out at its own deadline
    CHECK(Clock::now() - t0 >= 50ms);
    CHECK(served(1) == 1);  // and timed waits go on working after it
  });
}

TEST_CASE("a reused entry moved to a later deadline fires there, not at its key", "[timers][reuse]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    // Key the entry 100 ms ahead, end that wait at once, then wait 300 ms on the same
    // entry: at its key (100 ms) the heap must move it on rather than fire it.
    Future<int> soon;
    auto setter = spawn([soon]() mutable { soon.set_result(7); });
    CHECK(wait_for(soon, 100ms) == 7);
    setter.get();
    Future<int> never;
    const auto t0 = Clock::now();
    CHECK_THROWS_AS(wait_for(never, 300ms), TimeoutError);
    CHECK(Clock::now() - t0 >= 300ms);
    // And the entry that fired is not taken again: the next wait arms its own.
    Future<int> never2;
    const auto t1 = Clock::now();
    CHECK_THROWS_AS(wait_for(never2, 30ms), TimeoutError);
    CHECK(Clock::now() - t1 >= 30ms);
  });
}

TEST_CASE("timed waits served from other loops, cancelled and timed out, from many tasks", "[timers][reuse]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    constexpr int kTasks = 32, kRounds = 50;
    std::atomic<long> sum{0};
    std::atomic<int> timeouts{0}, cancels{0};
    std::vector<Task<>> ts;
    for (int k = 0; k < kTasks; ++k) {
      ts.push_back(spawn([&, k] {
        for (int r = 0; r < kRounds; ++r) {
          switch ((k + r) % 5) {
            case 0: {  // a short wait that times out (earlier than a kept key, or not)
              Future<int> never;
              try {
                (void)wait_for(never, 1ms);
              } catch (const TimeoutError&) {
                ++timeouts;
              }
              break;
            }
            case 1: {  // cancelled while it waits
              Future<int> never;
              auto waiter = spawn([never]() mutable { (void)wait_for(never, 10s); });
              yield();
              waiter.cancel();
              try {
                waiter.get();
              } catch (const CancelledError&) {
                ++cancels;
              }
              break;
            }
            default:
              sum += served(r);
              break;
          }
        }
      }));
    }
    for (auto& t : ts) t.get();
    long want = 0;
    int want_timeouts = 0, want_cancels = 0;
    for (int k = 0; k < kTasks; ++k)
      for (int r = 0; r < kRounds; ++r) {
        const int c = (k + r) % 5;
        if (c == 0) ++want_timeouts;
        if (c == 1) ++want_cancels;
        if (c >= 2) want += r;
      }
    CHECK(sum == want);
    CHECK(timeouts == want_timeouts);
    CHECK(cancels == want_cancels);
  });
}
