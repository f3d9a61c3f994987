// Cancellation: asyncio's rules at every suspension point spindle has in this layer
// (Task::get, Future::get, yield), and the lifecycle combinations of cancel.
#include <atomic>
#include <stdexcept>
#include <thread>

#include "support.hpp"

using namespace spindle;
using test::until_suspended;

TEST_CASE("a task cancelled before it starts never runs its body", "[cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> ran{false};
    // Pinned to this loop, which is busy running us: it cannot start before we suspend.
    auto t = spawn(TaskOptions{.pinned = true}, [&] { ran = true; });
    CHECK(t.cancel("early"));
    CHECK(t.cancel());  // twice is harmless: still pending, so still true
    try {
      t.get();
      FAIL("expected CancelledError");
    } catch (const CancelledError& e) {
      CHECK(e.message() == "early");
    }
    CHECK(t.cancelled());
    CHECK_FALSE(ran.load());
    CHECK_FALSE(t.cancel());  // done now
  });
}

TEST_CASE("cancel while suspended in Future::get raises there, with the message", "[cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<int> never;
    std::atomic<int> caught{0};
    auto t = spawn([&, never]() mutable {
      try {
        return never.get();
      } catch (const CancelledError& e) {
        caught = e.message() == "stop" ? 1 : 2;
        throw;
      }
    });
    until_suspended(Task<>(t));
    CHECK(t.cancel("stop"));
    CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK(caught == 1);
    CHECK(t.cancelled());
    CHECK(never.cancelled());  // asyncio: cancelling the awaiter cancels what it awaits
  });
}

TEST_CASE("cancelling a task that awaits another cancels the inner one and waits for it", "[cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> inner_cleaned{false};
    Future<> never;
    auto inner = spawn([&, never]() mutable {
      try {
        never.get();
      } catch (const CancelledError&) {
        yield();  // cleanup that itself suspends
        inner_cleaned = true;
        throw;
      }
    });
    auto outer = spawn([inner]() mutable { inner.get(); });
    until_suspended(Task<>(outer));
    until_suspended(Task<>(inner));
    outer.cancel();
    CHECK_THROWS_AS(outer.get(), CancelledError);
    CHECK(inner_cleaned.load());  // the outer ended only after the inner did
    CHECK(inner.cancelled());
  });
}

TEST_CASE("a task may catch CancelledError and go on", "[cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> gate;
    auto t = spawn([gate]() mutable {
      try {
        gate.get();
      } catch (const CancelledError&) {
        yield();  // the request was consumed: later waits work normally
        return 99;
      }
      return 0;
    });
    until_suspended(Task<>(t));
    t.cancel();
    CHECK(t.get() == 99);
    CHECK_FALSE(t.cancelled());
  });
}

TEST_CASE("yield raises a pending cancellation; a busy loop of yields is cancellable", "[cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<long> spins{0};
    auto t = spawn([&] {
      for (;;) {
        ++spins;
        yield();
      }
    });
    while (spins < 10) yield();
    t.cancel();
    CHECK_THROWS_AS(t.get(), CancelledError);
  });
}

TEST_CASE("cancel from a foreign thread wakes a suspended task", "[cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  Future<> never;
  auto t = rt.spawn([never]() mutable { never.get(); });
  while (!test::has_suspended(t)) std::this_thread::yield();
  std::thread([t]() mutable { t.cancel("from outside"); }).join();
  CHECK_THROWS_AS(t.get(), CancelledError);
}

TEST_CASE("cancel after completion returns false and changes nothing", "[cancel]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  auto t = rt.spawn([] { return 5; });
  CHECK(t.get() == 5);
  CHECK_FALSE(t.cancel());
  CHECK(t.result() == 5);
  CHECK_FALSE(t.cancelled());
}

TEST_CASE("cancellation is not delivered while the fibre unwinds another exception", "[cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> cleanup_done;
    std::atomic<bool> in_dtor{false};
    struct Guard {
      Future<> f;
      std::atomic<bool>* flag;
      ~Guard() {
        *flag = true;
        f.get();  // waits during unwinding: a cancel must not interrupt it
      }
    };
    auto t = spawn([&, cleanup_done] {
      Guard g{cleanup_done, &in_dtor};
      throw std::runtime_error("original");
    });
    while (!in_dtor) yield();
    t.cancel();
    for (int i = 0; i < 10; ++i) yield();
    CHECK_FALSE(t.done());  // still waiting in the destructor
    cleanup_done.set_result();
    CHECK_THROWS_WITH(t.get(), "original");  // failed, not cancelled
  });
}

TEST_CASE("a result that arrives as the waiter is cancelled is not lost", "[cancel][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    int delivered = 0, cancelled = 0;
    for (int round = 0; round < 300; ++round) {
      Future<int> f;
      auto t = spawn([f]() mutable { return f.get(); });
      if (round % 2) yield();
      auto setter = spawn([f]() mutable {
        try {
          f.set_result(1);
        } catch (const InvalidStateError&) {
          // the cancelled waiter cancelled f first (asyncio semantics)
        }
      });
      t.cancel();
      try {
        delivered += t.get();
      } catch (const CancelledError&) {
        ++cancelled;
      }
      setter.get();
      CHECK(f.done());
    }
    CHECK(delivered + cancelled == 300);
  });
}
