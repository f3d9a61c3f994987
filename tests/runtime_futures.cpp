// Futures across fibres, loops and foreign threads, and the suspend-then-publish race.
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include <spindle/waiting.hpp>

#include "support.hpp"

using namespace spindle;

TEST_CASE("a fibre awaits a future completed by a foreign thread", "[futures]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  Future<int> f;
  auto t = rt.spawn([f]() mutable { return f.get() * 2; });
  std::thread th([f]() mutable {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    f.set_result(21);
  });
  CHECK(t.get() == 42);  // and this foreign thread blocks on the task
  th.join();
}

TEST_CASE("a foreign thread blocks on a future a fibre completes", "[futures]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  Future<std::string> f;
  rt.spawn([f]() mutable {
    yield();
    f.set_result("from a fibre");
  });
  CHECK(f.get() == "from a fibre");
}

TEST_CASE("a future set twice, or set after cancel, throws InvalidStateError", "[futures]") {
  Future<int> f;
  f.set_result(1);
  CHECK_THROWS_AS(f.set_result(2), InvalidStateError);
  CHECK_THROWS_AS(f.set_exception(std::make_exception_ptr(std::runtime_error("x"))), InvalidStateError);
  CHECK(f.result() == 1);
  Future<int> c;
  CHECK(c.cancel("bye"));
  CHECK_FALSE(c.cancel());
  CHECK(c.cancelled());
  CHECK_THROWS_AS(c.set_result(1), InvalidStateError);
  try {
    c.get();
    FAIL("get() on a cancelled future must throw");
  } catch (const CancelledError& e) {
    CHECK(e.message() == "bye");
  }
  Future<> e;
  CHECK_THROWS_AS(e.set_exception(nullptr), std::invalid_argument);
  CHECK_THROWS_AS(e.result(), InvalidStateError);
}

TEST_CASE("set_exception reaches every waiter", "[futures]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<int> f;
    std::vector<Task<int>> waiters;
    for (int i = 0; i < 20; ++i) waiters.push_back(spawn([f]() mutable { return f.get(); }));
    yield();
    f.set_exception(std::make_exception_ptr(std::out_of_range("nope")));
    for (auto& w : waiters) CHECK_THROWS_AS(w.get(), std::out_of_range);
  });
}

TEST_CASE("suspend-then-publish: threads complete futures while fibres suspend on them", "[futures][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  constexpr int kRounds = 2000, kFibres = 8;
  // (Not futs(kFibres, inner): copies of a Future share one state.)
  std::vector<std::vector<Future<int>>> futs(kFibres);
  for (auto& v : futs) v.resize(kRounds);
  std::vector<Task<long>> tasks;
  for (int f = 0; f < kFibres; ++f)
    tasks.push_back(rt.spawn([&futs, f] {
      long s = 0;
      for (int r = 0; r < kRounds; ++r) s += futs[f][r].get();
      return s;
    }));
  // Completers race the fibres: some futures are set before the fibre waits, some while
  // it is switching out, some after it suspended.
  std::vector<std::thread> setters;
  for (int f = 0; f < kFibres; ++f)
    setters.emplace_back([&futs, f] {
      for (int r = 0; r < kRounds; ++r) futs[f][r].set_result(r);
    });
  for (auto& s : setters) s.join();
  for (auto& t : tasks) CHECK(t.get() == long(kRounds) * (kRounds - 1) / 2);
}

TEST_CASE("cross-loop ping-pong through futures between pinned tasks", "[futures]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  constexpr int kTrips = 2000;
  std::vector<Future<int>> ping(kTrips), pong(kTrips);
  auto a = rt.spawn(TaskOptions{.pinned = true, .loop = 0}, [&] {
    int v = 0;
    for (int i = 0; i < kTrips; ++i) {
      ping[i].set_result(v);
      v = pong[i].get();
    }
    return v;
  });
  auto b = rt.spawn(TaskOptions{.pinned = true, .loop = 1}, [&] {
    for (int i = 0; i < kTrips; ++i) pong[i].set_result(ping[i].get() + 1);
  });
  CHECK(a.get() == kTrips);
  b.get();
}

TEST_CASE("ping-pong across loops that park between messages: no lost wake-up", "[futures][stress]") {
  const unsigned n = GENERATE(2u, 4u);
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  constexpr int kTrips = 200;
  std::vector<Future<int>> ping(kTrips), pong(kTrips);
  // Each side sometimes pauses long enough (well past the 50 µs spin) for the other
  // worker to park, so every kind of hand-over happens: to a spinning, a parking and a
  // parked loop.
  auto pause = [](int i) {
    if (i % 3 == 0) sleep(std::chrono::microseconds(100 + (i * 37) % 400));
  };
  auto a = rt.spawn(TaskOptions{.pinned = true, .loop = 0}, [&] {
    int v = 0;
    for (int i = 0; i < kTrips; ++i) {
      pause(i);
      ping[i].set_result(v);
      v = pong[i].get();
    }
    return v;
  });
  auto b = rt.spawn(TaskOptions{.pinned = true, .loop = int(n) - 1}, [&] {
    for (int i = 0; i < kTrips; ++i) {
      const int v = ping[i].get();
      pause(i + 1);
      pong[i].set_result(v + 1);
    }
  });
  CHECK(a.get() == kTrips);
  b.get();
}

// gather's first failure leaves a node in each other future that marks its later outcome
// retrieved; a future that goes pending (its last handle dropped) frees that node with
// itself. LeakSanitizer (the ASan build) fails the test if it does not.
TEST_CASE("gather's node in a future that never completes goes with the future", "[futures][gather]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  harness.block_on([] {
    Future<int> fails;
    Future<int> never;
    fails.set_exception(std::make_exception_ptr(std::runtime_error("first")));
    CHECK_THROWS_WITH(gather(std::vector<Future<int>>{fails, never}), "first");
    CHECK_FALSE(never.done());
  });  // `never` goes here, pending
}
