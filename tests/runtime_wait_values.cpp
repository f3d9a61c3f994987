// wait_for and timeout when the caller is cancelled just as the task they wait for
// receives something: what the task ends with is handed to the caller, never dropped
// (a child parked in q.get() was handed an item, the caller was cancelled,
// and the item was neither returned nor left in the queue).
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>

#include <spindle/sync.hpp>
#include <spindle/waiting.hpp>

#include "support.hpp"

using namespace spindle;
using test::until_suspended;
using namespace std::chrono_literals;

namespace {

enum class Via { timeout, wait_for_fn, wait_for_task };

const char* via_name(Via v) {
  switch (v) {
    case Via::timeout:
      return "timeout(d, fn)";
    case Via::wait_for_fn:
      return "wait_for(fn, d)";
    case Via::wait_for_task:
      return "wait_for(task, d)";
  }
  return "?";
}

// Runs `body` (which returns an int) in a child through the chosen entry point.
template <class F>
int wait_via(Via via, F body) {
  switch (via) {
    case Via::timeout:
      return timeout(1h, body);
    case Via::wait_for_fn:
      return wait_for(body, 1h);
    case Via::wait_for_task:
      return wait_for(spawn(body), 1h);
  }
  return -1;
}

struct Tally {
  int returned = 0;  // the caller got the item
  int left = 0;      // the item was still in the queue
  int lost = 0;      // neither
  int both = 0;      // both (a duplicate)
  int wrong = 0;     // something else came back
};

// One round: the child parks in q.get(); the item is put (before the cancel, or by a
// task of its own racing with it) and the caller is cancelled. Afterwards the item is
// exactly once either in the caller's hands or in the queue.
void one_round(Via via, bool racing, int x, Tally& t) {
  Queue<int> q;
  Task<> child;
  std::atomic<bool> published{false};
  auto caller = spawn([&] {
    return wait_via(via, [&] {
      child = current_task();
      // release: orders the store to `child` before the flag; the test reads it after
      // an acquire load of the flag.
      published.store(true, std::memory_order_release);
      return q.get();
    });
  });
  while (!published.load(std::memory_order_acquire)) yield();
  until_suspended(child);  // parked in q.get()
  if (racing) {
    auto putter = spawn([&] { q.put_nowait(x); });
    caller.cancel("stop");
    putter.get();
  } else {
    q.put_nowait(x);
    caller.cancel("stop");
  }
  bool returned = false;
  try {
    const int v = caller.get();
    if (v != x) ++t.wrong;
    returned = true;
  } catch (const CancelledError&) {
  }
  bool left = false;
  if (q.qsize() == 1) {
    left = true;
    if (q.get_nowait() != x) ++t.wrong;
  } else if (q.qsize() != 0) {
    ++t.wrong;
  }
  if (returned && left) ++t.both;
  if (!returned && !left) ++t.lost;
  t.returned += returned;
  t.left += left;
}

}  // namespace

TEST_CASE("an item handed to the child as the caller is cancelled is returned or left queued, never lost",
          "[wait_for][timeout][cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = 1000 / (test::kScaleDown > 1 ? 5 : 1);
  test::QuietRuntime q(n);
  q.rt.block_on([&] {
    for (Via via : {Via::timeout, Via::wait_for_fn, Via::wait_for_task}) {
      for (bool racing : {false, true}) {
        Tally t;
        for (int i = 0; i < rounds; ++i) one_round(via, racing, i, t);
        INFO(via_name(via) << (racing ? ", put racing the cancel" : ", put then cancel") << ", " << n
                           << " workers: returned " << t.returned << ", left " << t.left);
        CHECK(t.lost == 0);
        CHECK(t.both == 0);
        CHECK(t.wrong == 0);
        CHECK(t.returned + t.left == rounds);
      }
    }
  });
}

TEST_CASE("a child that turns the caller's cancellation into a value: it is returned, the cancellation stays pending",
          "[wait_for][timeout][cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    for (Via via : {Via::timeout, Via::wait_for_fn, Via::wait_for_task}) {
      INFO(via_name(via));
      Task<> child;
      std::atomic<bool> published{false};
      std::atomic<int> got{0};
      auto caller = spawn([&] {
        got = wait_via(via, [&] {
          child = current_task();
          published.store(true, std::memory_order_release);  // as in one_round
          try {
            sleep(1h);
          } catch (const CancelledError& e) {
            CHECK(e.message() == "stop");  // passed on with the caller's message
            return 42;
          }
          return 0;
        });
        yield();  // the caller's own cancellation is still pending: raised here
        got = -1;
      });
      while (!published.load(std::memory_order_acquire)) yield();
      until_suspended(child);
      caller.cancel("stop");
      try {
        caller.get();
        FAIL("expected the caller's CancelledError at its next suspension point");
      } catch (const CancelledError& e) {
        CHECK(e.message() == "stop");
      }
      CHECK(got.load() == 42);
    }
  });
}

TEST_CASE("a child that fails after the caller's cancellation: its exception reaches the caller",
          "[wait_for][timeout][cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    for (Via via : {Via::timeout, Via::wait_for_fn, Via::wait_for_task}) {
      INFO(via_name(via));
      Task<> child;
      std::atomic<bool> published{false};
      auto caller = spawn([&] {
        return wait_via(via, [&]() -> int {
          child = current_task();
          published.store(true, std::memory_order_release);  // as in one_round
          try {
            sleep(1h);
          } catch (const CancelledError&) {
            throw std::runtime_error("cleanup failed");
          }
          return 0;
        });
      });
      while (!published.load(std::memory_order_acquire)) yield();
      until_suspended(child);
      caller.cancel("stop");
      CHECK_THROWS_WITH(caller.get(), "cleanup failed");
    }
  });
}
