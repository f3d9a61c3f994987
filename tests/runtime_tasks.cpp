// Tasks: spawn, get, results of every kind, exceptions, names, callbacks, reports.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace spindle;

TEST_CASE("spawn and get return values of every kind", "[tasks]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    CHECK(spawn([] { return 42; }).get() == 42);
    CHECK(spawn([](int a, int b) { return a + b; }, 40, 2).get() == 42);
    int calls = 0;
    spawn([&] { ++calls; }).get();
    CHECK(calls == 1);
    CHECK(spawn([] { return std::string(1000, 'x'); }).get().size() == 1000);
    // move-only: moved out once; a second get() is an error, not a silent empty value
    auto mo = spawn([] { return std::make_unique<int>(7); });
    CHECK(*mo.get() == 7);
    CHECK_THROWS_AS(mo.get(), InvalidStateError);
    // references: the referent outlives the task
    static int target = 5;
    auto ref = spawn([]() -> int& { return target; });
    CHECK(&ref.get() == &target);
  });
}

TEST_CASE("exceptions cross get() and result(); exception() returns them", "[tasks]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto t = spawn([]() -> int { throw std::runtime_error("boom"); });
    CHECK_THROWS_WITH(t.get(), "boom");
    CHECK_THROWS_WITH(t.result(), "boom");
    auto e = t.exception();
    REQUIRE(e);
    CHECK_THROWS_AS(std::rethrow_exception(e), std::runtime_error);
    CHECK(!t.cancelled());
    auto ok = spawn([] { return 1; });
    ok.get();
    CHECK(ok.exception() == nullptr);
  });
}

TEST_CASE("result() and exception() on a pending task throw InvalidStateError", "[tasks]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> gate;
    auto t = spawn([gate]() mutable {
      gate.get();
      return 1;
    });
    CHECK_FALSE(t.done());
    CHECK_THROWS_AS(t.result(), InvalidStateError);
    CHECK_THROWS_AS(t.exception(), InvalidStateError);
    gate.set_result();
    CHECK(t.get() == 1);
    CHECK(t.done());
    CHECK(t.result() == 1);
  });
}

TEST_CASE("100k tasks each yield and return; every result arrives", "[tasks]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  constexpr long kTasks = 100000 / test::kScaleDown;
  const long sum = rt.block_on([] {
    std::vector<Task<long>> ts;
    ts.reserve(kTasks);
    for (long i = 0; i < kTasks; ++i)
      ts.push_back(spawn([i] {
        yield();
        return i;
      }));
    long s = 0;
    for (auto& t : ts) s += t.get();
    return s;
  });
  CHECK(sum == kTasks * (kTasks - 1) / 2);
}

TEST_CASE("spawn from a foreign thread, and get() blocks that thread", "[tasks]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  std::vector<std::thread> threads;
  std::atomic<long> total{0};
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int i = 0; i < 200; ++i) {
        auto t = rt.spawn([k, i] {
          yield();
          return k * 1000 + i;
        });
        total += t.get();
      }
    });
  for (auto& t : threads) t.join();
  long expect = 0;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 200; ++i) expect += k * 1000 + i;
  CHECK(total == expect);
}

TEST_CASE("names, where() and current_task()", "[tasks]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto named = spawn(TaskOptions{.name = "worker-7"}, [] { return current_task().name(); });
    CHECK(named.get() == "worker-7");
    CHECK(named.name() == "worker-7");
    auto anon = spawn([] {});
    anon.get();
    CHECK(anon.name().rfind("Task-", 0) == 0);
    anon.set_name("renamed");
    CHECK(anon.name() == "renamed");
    CHECK(anon.where().state == TaskState::done);
    CHECK(to_string(anon.where()) == "done");

    Future<> gate;
    auto waiting = spawn([gate]() mutable { gate.get(); });
    test::until_suspended(waiting);
    const TaskWhere w = waiting.where();
    CHECK(w.state == TaskState::suspended);
    CHECK(w.started);
    CHECK(w.file.find("runtime_tasks.cpp") != std::string::npos);
    CHECK(to_string(w) == w.function + " at " + w.file + ":" + std::to_string(w.line));
    gate.set_result();
    waiting.get();
    CHECK(current_task().name() == "main");
  });
  CHECK_FALSE(current_task());
  CHECK_FALSE(in_runtime());
}

TEST_CASE("all_tasks lists suspended tasks and the caller", "[tasks]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> gate;
    std::vector<Task<>> ts;
    for (int i = 0; i < 10; ++i)
      ts.push_back(spawn(TaskOptions{.name = "sleeper-" + std::to_string(i)}, [gate]() mutable { gate.get(); }));
    for (auto& t : ts) test::until_suspended(t);
    auto all = all_tasks();
    int sleepers = 0;
    bool me = false;
    for (auto& t : all) {
      sleepers += t.name().rfind("sleeper-", 0) == 0;
      me = me || t == current_task();
    }
    CHECK(sleepers == 10);
    CHECK(me);
    gate.set_result();
    for (auto& t : ts) t.get();
  });
}

TEST_CASE("done callbacks are scheduled, never run inline in the completer", "[tasks]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<int> f;
    Future<std::string> seen;
    Task<> completer = current_task();
    std::atomic<bool> same_task{false};
    f.add_done_callback([&, seen](Future<int>& done) mutable {
      same_task = current_task() == completer;  // must run in a task of its own
      seen.set_result("got " + std::to_string(done.result()));
    });
    f.set_result(5);
    CHECK(seen.get() == "got 5");
    CHECK_FALSE(same_task.load());

    // A callback added after completion is scheduled too.
    Future<int> after;
    f.add_done_callback([after](Future<int>& d) mutable { after.set_result(d.result() + 1); });
    CHECK(after.get() == 6);

    auto t = spawn([] { return 3; });
    Future<int> tcb;
    t.add_done_callback([tcb](Task<int>& d) mutable { tcb.set_result(d.result()); });
    CHECK(tcb.get() == 3);
  });
}

TEST_CASE("an exception nobody retrieved is reported when its task goes away", "[tasks]") {
  test::Reports reports;
  {
    test::Checked harness(test::opts(2, &reports), {.reports = true});  // the test checks its reports
    Runtime& rt = harness.rt;
    rt.block_on([] {
      {
        auto t = spawn(TaskOptions{.name = "careless"}, [] { throw std::runtime_error("lost?"); });
        while (!t.done()) yield();
      }  // last handle dropped here, after the task ended
      auto seen = spawn([] { throw std::logic_error("seen"); });
      CHECK_THROWS(seen.get());  // retrieved: no report
      // A callback that throws is reported too.
      Future<> f;
      static std::atomic<bool> ran{false};
      f.add_done_callback([](Future<>&) {
        ran = true;
        throw std::runtime_error("callback failed");
      });
      f.set_result();
      while (!ran) yield();  // it must start before shutdown would cancel it unstarted
    });
  }
  const auto all = reports.all();
  int careless = 0, cb = 0, seen = 0;
  for (auto& r : all) {
    if (r.kind != Report::Kind::unretrieved_exception) continue;
    careless += r.task_name == "careless";
    try {
      std::rethrow_exception(r.error);
    } catch (const std::exception& e) {
      cb += std::string(e.what()) == "callback failed";
      seen += std::string(e.what()) == "seen";
    }
  }
  CHECK(careless == 1);
  CHECK(cb == 1);
  CHECK(seen == 0);
}

TEST_CASE("bad input gets a clear error", "[tasks]") {
  CHECK_THROWS_AS(spawn([] {}), RuntimeError);  // outside a runtime
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  CHECK_THROWS_AS(rt.spawn(TaskOptions{.pinned = true, .loop = 5}, [] {}), std::invalid_argument);
  Task<> empty;
  CHECK_THROWS_AS(empty.done(), InvalidStateError);
  rt.shutdown();
  CHECK(rt.closed());
  CHECK_THROWS_AS(rt.spawn([] {}), RuntimeError);
}

TEST_CASE("a report names an unnamed task as name() does", "[tasks][reports]") {
  const unsigned n = SPINDLE_WORKERS();
  std::string asked;
  std::vector<Report> reports;
  {
    test::Checked harness(n, {.reports = true});  // the reports are the point
    harness.block_on([&] {
      Future<std::string> name_seen;
      // One that asks for its own name first, one whose name nobody asked for.
      (void)spawn([name_seen]() mutable {
        name_seen.set_result(current_task().name());
        throw std::runtime_error("asked");
      });
      (void)spawn([] { throw std::runtime_error("never asked"); });
      asked = name_seen.get();
    });
    harness.finish();
    reports = harness.reports.all();
  }
  REQUIRE(reports.size() == 2);
  for (const Report& r : reports) {
    CHECK(r.kind == Report::Kind::unretrieved_exception);
    CHECK(r.task_name.rfind("Task-", 0) == 0);  // never "<unnamed task>"
    try {
      std::rethrow_exception(r.error);
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()) == "asked") CHECK(r.task_name == asked);
    }
  }
  CHECK(reports[0].task_name != reports[1].task_name);
}

TEST_CASE("a task cancelled before its start releases its callable at once", "[tasks][cancel]") {
  // One worker: the task cannot start between the spawn and the cancel.
  test::Checked harness(1);
  harness.block_on([] {
    auto token = std::make_shared<int>(0);
    auto t = spawn([token] {});
    CHECK(token.use_count() == 2);
    CHECK(t.cancel());
    CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK(token.use_count() == 1);  // the handle is still held; its captures are gone
  });
}
