// Generator<T, In>: values out, values in (send), range-for, exceptions, early
// destruction unwinding the body, cancellation of the consumer, foreign-thread consumers.
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spindle/generator.hpp>
#include <spindle/waiting.hpp>

#include "support.hpp"

using namespace spindle;
using test::until_suspended;
using namespace std::chrono_literals;

TEST_CASE("a generator yields its values to a range-for", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Generator<int> g([](auto& co) {
      for (int i = 0; i < 5; ++i) co.yield(i * i);
    });
    std::vector<int> got;
    for (int v : g) got.push_back(v);
    CHECK(got == std::vector<int>{0, 1, 4, 9, 16});
    CHECK(g.done());
    CHECK_FALSE(g.next().has_value());  // stays exhausted
  });
}

TEST_CASE("a generator's body may suspend between values", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Generator<std::string> g([](Yield<std::string>& co) {
      for (int i = 0; i < 3; ++i) {
        sleep(1ms);
        Future<int> f;
        call_soon([f]() mutable { f.set_result(7); });
        co.yield(std::to_string(i + f.get()));
      }
    });
    CHECK(*g.next() == "7");
    CHECK(*g.next() == "8");
    CHECK(*g.next() == "9");
    CHECK_FALSE(g.next());
  });
}

TEST_CASE("send delivers a value to the pending yield (asend)", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Generator<int, int> acc([](Yield<int, int>& co) {
      int sum = 0;
      for (;;) {
        const int v = co.yield(sum);
        if (v < 0) return;
        sum += v;
      }
    });
    CHECK_THROWS_AS(acc.send(1), InvalidStateError);  // not started yet
    CHECK(*acc.next() == 0);
    CHECK(*acc.send(5) == 5);
    CHECK(*acc.send(2) == 7);
    CHECK(*acc.next() == 7);  // next() sends a default In (0)
    CHECK_FALSE(acc.send(-1));
    CHECK(acc.done());
    // A range-for over a generator with an In sends default values.
    Generator<std::string, std::string> echo([](auto& co) {
      std::string in = co.yield("start");
      for (int i = 0; i < 2; ++i) in = co.yield("got[" + in + "]");
    });
    std::vector<std::string> seen;
    for (const auto& s : echo) seen.push_back(s);
    CHECK(seen == std::vector<std::string>{"start", "got[]", "got[]"});
  });
}

TEST_CASE("destroying a generator early unwinds its body's stack", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> destroyed{0};
    std::atomic<bool> saw_exit{false};
    struct Guard {
      std::atomic<int>& d;
      ~Guard() { ++d; }
    };
    {
      Generator<int> g([&](auto& co) {
        Guard outer{destroyed};
        try {
          for (int i = 0;; ++i) {
            Guard inner{destroyed};
            co.yield(i);
          }
        } catch (const GeneratorExit&) {
          saw_exit = true;
          throw;
        }
      });
      CHECK(*g.next() == 0);
      CHECK(*g.next() == 1);
      CHECK(destroyed == 1);  // the first iteration's inner guard
    }
    CHECK(destroyed == 3);  // the second inner guard and the outer one
    CHECK(saw_exit.load());
    // Never started: the body never runs.
    std::atomic<bool> ran{false};
    {
      Generator<int> g([&](auto& co) {
        ran = true;
        co.yield(1);
      });
    }
    CHECK_FALSE(ran.load());
  });
}

TEST_CASE("close(): GeneratorExit at the yield; a body that yields again gets it again", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> exits{0};
    Generator<int> stubborn([&](auto& co) {
      for (int i = 0;; ++i) {
        try {
          co.yield(i);
        } catch (const GeneratorExit&) {
          if (++exits == 3) throw;
        }
      }
    });
    CHECK(*stubborn.next() == 0);
    stubborn.close();
    CHECK(exits == 3);
    CHECK(stubborn.done());
    CHECK_FALSE(stubborn.next());
    // An exception raised while closing comes out of close().
    Generator<int> bad([](auto& co) {
      try {
        co.yield(1);
      } catch (const GeneratorExit&) {
        throw std::runtime_error("cleanup failed");
      }
    });
    CHECK(*bad.next() == 1);
    CHECK_THROWS_WITH(bad.close(), "cleanup failed");
    bad.close();  // idempotent
  });
}

TEST_CASE("an exception in the body comes out of next(), once", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Generator<int> g([](auto& co) {
      co.yield(1);
      throw std::logic_error("broken");
    });
    CHECK(*g.next() == 1);
    CHECK_THROWS_AS(g.next(), std::logic_error);
    CHECK_FALSE(g.next());
    CHECK(g.done());
  });
}

TEST_CASE("cancelling the consumer while it waits cancels the body", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> body_cancelled{false}, body_inside{false};
    auto consumer = spawn([&] {
      Generator<int> g([&](auto& co) {
        co.yield(1);
        try {
          body_inside = true;  // a cancellation from now on is raised in the sleep below
          sleep(1h);
        } catch (const CancelledError&) {
          body_cancelled = true;
          throw;
        }
        co.yield(2);
      });
      int sum = 0;
      for (int v : g) sum += v;
      return sum;
    });
    // Not a fixed delay: under TSan on a loaded machine the body had not always got
    // past co.yield(1) 2 ms after the consumer suspended, and then the cancellation was
    // raised there, outside the try.
    while (!body_inside.load()) sleep(1ms);
    until_suspended(consumer);  // waiting for the second value
    consumer.cancel("stop");
    try {
      consumer.get();
      FAIL("expected CancelledError");
    } catch (const CancelledError& e) {
      CHECK(e.message() == "stop");
    }
    CHECK(body_cancelled.load());
  });
}

TEST_CASE("a generator of a move-only type, moved between tasks mid-way", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Generator<std::unique_ptr<int>> g([](auto& co) {
      for (int i = 0; i < 4; ++i) co.yield(std::make_unique<int>(i));
    });
    CHECK(**g.next() == 0);
    auto other = spawn([g = std::move(g)]() mutable {
      int sum = 0;
      while (auto p = g.next()) sum += **p;
      return sum;
    });
    CHECK(other.get() == 1 + 2 + 3);
  });
}

TEST_CASE("generators nest: one consumes another", "[generator]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Generator<long> evens([](auto& co) {
      Generator<long> nat([](auto& c2) {
        for (long i = 0;; ++i) c2.yield(i);
      });
      for (long v : nat)
        if (v % 2 == 0) co.yield(v);
    });
    long sum = 0;
    int k = 0;
    for (long v : evens) {
      sum += v;
      if (++k == 1000) break;
    }
    CHECK(sum == 999L * 1000);  // 0 + 2 + ... + 1998
  });                           // breaking out destroys `evens`, which closes `nat` inside it
}

TEST_CASE("a thread outside the runtime consumes a generator", "[generator]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  Generator<int> g(rt, [](auto& co) {
    for (int i = 1; i <= 100; ++i) {
      if (i % 10 == 0) sleep(100us);
      co.yield(i);
    }
  });
  int sum = 0;
  for (int v : g) sum += v;
  CHECK(sum == 5050);
}

TEST_CASE("many values through a generator while other tasks run", "[generator][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> stop{false};
    std::vector<Task<>> noise;
    for (int i = 0; i < 4; ++i)
      noise.push_back(spawn([&] {
        while (!stop) yield();
      }));
    std::vector<Task<long>> consumers;
    for (int c = 0; c < 4; ++c)
      consumers.push_back(spawn([] {
        Generator<long> g([](auto& co) {
          for (long i = 0; i < 5000; ++i) co.yield(i);
        });
        long s = 0;
        for (long v : g) s += v;
        return s;
      }));
    for (auto& c : consumers) CHECK(c.get() == 4999L * 5000 / 2);
    stop = true;
    for (auto& t : noise) t.get();
  });
}
