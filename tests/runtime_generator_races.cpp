// Generator and shield at their edges: a body that catches the consumer's
// cancellation and yields (it used to deadlock with its consumer), two tasks consuming
// one generator at once (a data race and use-after-free; now InvalidStateError), and a
// shielded task that fails after its caller was cancelled (reported as never retrieved).
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <spindle/generator.hpp>
#include <spindle/waiting.hpp>

#include "support.hpp"

using namespace spindle;
using test::until_suspended;
using namespace std::chrono_literals;

namespace {

// Waits for t to end, at most `limit` (a safety net against a deadlock, not a timing
// assertion: the old code hung here until shutdown). True if it ended.
bool ends_within(const Task<>& t, std::chrono::nanoseconds limit) {
  return wait(std::vector<Task<>>{t}, {.timeout = limit}).pending.empty();
}

}  // namespace

// ---- the consumer cancelled while the body runs for it ---------------------------------

TEST_CASE("a body that catches the consumer's cancellation and yields: next() returns that value",
          "[generator][cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    std::atomic<bool> body_inside{false}, caught{false}, resumed_again{false};
    std::atomic<int> got{0};
    auto consumer = spawn([&] {
      Generator<int> g([&](auto& co) {
        co.yield(1);
        try {
          body_inside = true;  // a cancellation from now on is raised in the sleep below
          sleep(1h);
        } catch (const CancelledError& e) {
          CHECK(e.message() == "stop");  // the consumer's, passed on
          caught = true;
        }
        co.yield(2);
        resumed_again = true;  // never: the consumer's next next() raises before resuming it
        co.yield(3);
      });
      CHECK(g.next() == 1);
      got = g.next().value();  // cancelled while waiting here: gets the body's 2
      (void)g.next();          // the consumer's own cancellation, still pending, is raised here
      got = -1;
    });
    while (!body_inside.load()) yield();
    until_suspended(consumer);  // waiting in the second next()
    consumer.cancel("stop");
    REQUIRE(ends_within(consumer, 20s));  // the old code deadlocked here
    try {
      consumer.get();
      FAIL("expected CancelledError");
    } catch (const CancelledError& e) {
      CHECK(e.message() == "stop");
    }
    CHECK(caught.load());
    CHECK(got.load() == 2);
    CHECK_FALSE(resumed_again.load());  // closed by the generator's destructor instead
  });
}

TEST_CASE("a body that catches the consumer's cancellation and returns or fails: next() says so",
          "[generator][cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    for (bool fail : {false, true}) {
      INFO((fail ? "the body fails" : "the body returns"));
      std::atomic<bool> body_inside{false};
      std::atomic<int> seen{0};  // 1: next() returned nullopt, 2: it rethrew the failure
      auto consumer = spawn([&] {
        Generator<int> g([&](auto& co) {
          co.yield(1);
          try {
            body_inside = true;
            sleep(1h);
          } catch (const CancelledError&) {
            if (fail) throw std::runtime_error("cleanup failed");
            return;
          }
        });
        CHECK(g.next() == 1);
        try {
          if (!g.next()) seen = 1;
        } catch (const std::runtime_error& e) {
          if (std::string(e.what()) == "cleanup failed") seen = 2;
        }
        yield();  // the consumer's cancellation is still pending
        seen = -1;
      });
      while (!body_inside.load()) yield();
      until_suspended(consumer);
      consumer.cancel("stop");
      REQUIRE(ends_within(consumer, 20s));
      CHECK_THROWS_AS(consumer.get(), CancelledError);
      CHECK(seen.load() == (fail ? 2 : 1));
    }
  });
}

TEST_CASE("a body that ignores every cancellation still lets a cancelled consumer go", "[generator][cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    std::atomic<int> values{0};
    std::atomic<bool> body_inside{false};
    auto consumer = spawn([&] {
      Generator<int> g([&](auto& co) {
        for (int i = 0;; ++i) {
          try {
            body_inside = true;
            sleep(1h);
          } catch (const CancelledError&) {
          }
          try {
            co.yield(i);
          } catch (const CancelledError&) {
          }
        }
      });
      for (;;) {
        (void)g.next();
        ++values;
      }
    });
    while (!body_inside.load()) yield();
    until_suspended(consumer);
    consumer.cancel("stop");
    REQUIRE(ends_within(consumer, 20s));
    CHECK_THROWS_AS(consumer.get(), CancelledError);
    CHECK(values.load() == 1);  // the value yielded after the cancellation, then the error
  });
}

// ---- two consumers at once ---------------------------------------------------------------

TEST_CASE("two tasks consuming one generator at once: the second gets InvalidStateError", "[generator][race]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    // Strings long enough to live on the heap, so that a consumer moving a slot while
    // another writes it is a use-after-free ASan sees (and a race TSan sees).
    const std::string pad(48, 'x');
    Generator<std::string, std::string> g([&](auto& co) {
      long accepted = 0;
      std::string out = pad + "0";
      for (;;) {
        std::string in = co.yield(out);
        if (in.size() == pad.size() + 1) ++accepted;
        out = pad + std::to_string(accepted);
        yield();  // the consumer in send() stays inside it a while: the other one runs
      }
    });
    REQUIRE(g.next() == pad + "0");
    const int per = 2000 / test::kScaleDown;
    std::atomic<long> ok{0}, busy{0}, bad{0};
    auto consume = [&] {
      for (int i = 0; i < per; ++i) {
        try {
          const auto v = g.send(pad + "1");
          if (!v || v->size() <= pad.size()) ++bad;
          ++ok;
        } catch (const InvalidStateError& e) {
          if (std::string(e.what()).find("already running") == std::string::npos) ++bad;
          ++busy;
        }
        if (i % 4 == 0) yield();
      }
    };
    auto a = spawn(consume);
    auto b = spawn(consume);
    a.get();
    b.get();
    INFO("accepted " << ok.load() << ", refused " << busy.load());
    CHECK(bad.load() == 0);
    CHECK(ok.load() + busy.load() == 2L * per);
    // Each accepted send reached the body exactly once.
    CHECK(g.send(std::string("-")) == pad + std::to_string(ok.load()));
  });
}

TEST_CASE("close() from a second task while a consumer is inside next(): InvalidStateError", "[generator][race]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] {
    Future<> go;
    std::atomic<bool> inside{false};
    Generator<int> g([&](auto& co) {
      inside = true;
      go.get();
      co.yield(1);
    });
    auto consumer = spawn([&] { return g.next().value(); });
    while (!inside.load()) yield();
    CHECK_THROWS_AS(g.close(), InvalidStateError);
    CHECK_THROWS_AS(g.next(), InvalidStateError);
    go.set_result();
    CHECK(consumer.get() == 1);
    g.close();  // now it is free
    CHECK(g.done());
  });
}

// ---- shield --------------------------------------------------------------------------------

TEST_CASE("shield: a task that fails after its caller was cancelled is not reported", "[shield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  {
    Runtime rt(test::opts(n, &reports));
    rt.block_on([] {
      Future<> go;
      std::atomic<bool> failing{false};
      auto waiter = spawn([go, &failing] {
        return shield([go, &failing]() mutable -> int {
          go.get();
          failing = true;
          throw std::runtime_error("late failure");
        });
      });
      until_suspended(waiter);
      waiter.cancel("waiter only");
      CHECK_THROWS_AS(waiter.get(), CancelledError);
      go.set_result();  // now the shielded task fails, with nobody to look
      while (!failing.load()) yield();

      // With a handle of one's own the failure can still be fetched.
      Future<> go2;
      auto inner = spawn([go2]() mutable -> int {
        go2.get();
        throw std::runtime_error("held failure");
      });
      auto waiter2 = spawn([inner] { return shield(inner); });
      until_suspended(waiter2);
      waiter2.cancel();
      CHECK_THROWS_AS(waiter2.get(), CancelledError);
      go2.set_result();
      CHECK_THROWS_WITH(inner.get(), "held failure");
    });
    rt.shutdown();  // every task has ended and been released: reports are made by now
  }
  CHECK(reports.count(Report::Kind::unretrieved_exception) == 0);
  CHECK(reports.all().empty());
}

TEST_CASE("shield: a failure with nobody cancelled still reaches the caller", "[shield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::QuietRuntime q(n);
  q.rt.block_on([] { CHECK_THROWS_WITH(shield([]() -> int { throw std::runtime_error("inner"); }), "inner"); });
}
