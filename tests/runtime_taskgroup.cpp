// TaskGroup (asyncio.TaskGroup) and JobScheduler (aiojobs): structured waiting, failure
// propagation, nesting, cancellation of the joiner, and the concurrency cap counted
// under stress.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spindle/job_scheduler.hpp>
#include <spindle/task_group.hpp>
#include <spindle/waiting.hpp>

#include "support.hpp"

using namespace spindle;
using test::forever;
using test::until_suspended;
using namespace std::chrono_literals;

// ---- TaskGroup -----------------------------------------------------------------------------

TEST_CASE("TaskGroup::join waits for every child", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> sum{0};
    TaskGroup tg;
    std::vector<Task<int>> ts;
    for (int i = 1; i <= 10; ++i)
      ts.push_back(tg.spawn([&, i] {
        sleep(std::chrono::milliseconds(i % 4));
        sum += i;
        return i;
      }));
    tg.join();
    CHECK(sum == 55);
    CHECK(tg.size() == 0);
    for (auto& t : ts) CHECK(t.done());
    CHECK(ts[3].get() == 4);
    tg.join();  // a second join returns at once
    CHECK_THROWS_AS(tg.spawn([] {}), TaskGroupClosed);
    CHECK_THROWS_AS(tg.spawn([] {}), RuntimeError);  // TaskGroupClosed is a RuntimeError
  });
}

TEST_CASE("TaskGroup: the first failure cancels the rest; join throws ExceptionGroup", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  {
    test::Checked harness(test::opts(n, &reports), {.reports = true});  // the test checks its reports
    Runtime& rt = harness.rt;
    rt.block_on([] {
      std::atomic<int> cancelled{0};
      TaskGroup tg;
      for (int i = 0; i < 4; ++i)
        tg.spawn([&] {
          try {
            forever();
          } catch (const CancelledError&) {
            ++cancelled;
            throw;
          }
        });
      tg.spawn([] {
        sleep(2ms);  // not an order the test relies on: a sibling may be cancelled unstarted
        throw std::runtime_error("child failed");
      });
      try {
        tg.join();
        FAIL("expected ExceptionGroup");
      } catch (const ExceptionGroup& eg) {
        REQUIRE(eg.size() == 1);  // cancelled siblings are not failures
        CHECK(eg.count<std::runtime_error>() == 1);
        CHECK(std::string(eg.what()).find("1 sub-exception") != std::string::npos);
      }
      // Those that had started ran their handler; the others never started.
      CHECK(cancelled <= 4);
      CHECK_THROWS_AS(tg.spawn([] {}), TaskGroupClosed);
    });
  }
  CHECK(reports.count(Report::Kind::unretrieved_exception) == 0);  // join retrieved it
}

TEST_CASE("TaskGroup: a child fails while another is being cancelled", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    TaskGroup tg;
    // B fails in its cancellation handler, after A's failure made the group cancel it.
    auto b = tg.spawn([] {
      try {
        forever();
      } catch (const CancelledError&) {
        sleep(1ms);
        throw std::logic_error("cleanup of B failed");
      }
    });
    auto c = tg.spawn(forever);  // cancelled cleanly: not a failure
    until_suspended(b);
    until_suspended(c);
    tg.spawn([]() { throw std::runtime_error("A failed"); });
    try {
      tg.join();
      FAIL("expected ExceptionGroup");
    } catch (const ExceptionGroup& eg) {
      CHECK(eg.size() == 2);
      CHECK(eg.count<std::runtime_error>() == 1);
      CHECK(eg.count<std::logic_error>() == 1);
      // In the order they failed: A first.
      CHECK_THROWS_WITH(std::rethrow_exception(eg.exceptions()[0]), "A failed");
    }
    CHECK(c.cancelled());
    CHECK_FALSE(b.cancelled());  // it ended with its own exception
  });
}

TEST_CASE("TaskGroup: two children failing at once are both reported", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> go;
    TaskGroup tg;
    std::vector<Task<>> children;
    for (int i = 0; i < 2; ++i)
      children.push_back(tg.spawn([go, i]() mutable {
        try {
          go.get();
        } catch (const CancelledError&) {
          // the sibling's failure got here first: fail anyway (as a race would)
        }
        throw std::runtime_error("failure " + std::to_string(i));
      }));
    for (auto& c : children) until_suspended(c);  // both wait on `go` before it is set
    go.set_result();
    try {
      tg.join();
      FAIL("expected ExceptionGroup");
    } catch (const ExceptionGroup& eg) {
      CHECK(eg.size() == 2);
    }
  });
}

TEST_CASE("TaskGroup: a child cancelled from outside is not a failure", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    TaskGroup tg;
    auto victim = tg.spawn(forever);
    auto ok = tg.spawn([] { return 1; });
    until_suspended(victim);
    victim.cancel();
    tg.join();
    CHECK(victim.cancelled());
    CHECK(ok.get() == 1);
  });
}

TEST_CASE("TaskGroup: cancelling the joiner cancels the children, waits, then raises", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> ended{0};
    std::atomic<int> seen_by_owner{-1};
    std::atomic<bool> joining{false};
    auto owner = spawn([&] {
      TaskGroup tg;
      std::vector<Task<>> kids;
      for (int i = 0; i < 3; ++i)
        kids.push_back(tg.spawn([&] {
          try {
            forever();
          } catch (const CancelledError&) {
            sleep(1ms);
            ++ended;
            throw;
          }
        }));
      for (auto& k : kids) until_suspended(k);
      joining = true;
      try {
        tg.join();
      } catch (const CancelledError&) {
        seen_by_owner = ended.load();
        throw;
      }
    });
    while (!joining) yield();
    until_suspended(owner);
    owner.cancel("owner");
    try {
      owner.get();
      FAIL("expected CancelledError");
    } catch (const CancelledError& e) {
      CHECK(e.message() == "owner");
    }
    CHECK(seen_by_owner == 3);
  });
}

TEST_CASE("TaskGroups nest; a failure deep inside surfaces as nested ExceptionGroups", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<bool> inner_sibling_cancelled{false};
    TaskGroup outer;
    auto other = outer.spawn(forever);  // first: the deep failure may come at once
    outer.spawn([&] {
      TaskGroup inner;
      auto sibling = inner.spawn([&] {
        try {
          forever();
        } catch (const CancelledError&) {
          inner_sibling_cancelled = true;
          throw;
        }
      });
      inner.spawn([sibling] {
        until_suspended(sibling);  // it has started: the failure cancels it where it waits
        throw std::runtime_error("deep");
      });
      inner.join();
    });
    try {
      outer.join();
      FAIL("expected ExceptionGroup");
    } catch (const ExceptionGroup& eg) {
      REQUIRE(eg.size() == 1);
      CHECK(eg.count<ExceptionGroup>() == 1);
      try {
        std::rethrow_exception(eg.exceptions()[0]);
      } catch (const ExceptionGroup& in) {
        CHECK(in.count<std::runtime_error>() == 1);
      }
    }
    CHECK(inner_sibling_cancelled.load());
    CHECK(other.cancelled());
  });
}

TEST_CASE("TaskGroup: cancelling a child that owns a group cancels the grandchildren", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> grandkids_cancelled{0};
    TaskGroup outer;
    auto mid = outer.spawn([&] {
      TaskGroup inner;
      for (int i = 0; i < 3; ++i)
        inner.spawn([&] {
          try {
            forever();
          } catch (const CancelledError&) {
            ++grandkids_cancelled;
            throw;
          }
        });
      inner.join();
    });
    // mid and its three children suspended (all_tasks lists queued tasks too: count waits)
    auto waiting = [] {
      std::size_t k = 0;
      for (auto& t : all_tasks()) k += test::has_suspended(t);
      return k;
    };
    while (waiting() < 4) yield();
    mid.cancel();
    outer.join();  // a cancelled child is not a failure
    CHECK(mid.cancelled());
    CHECK(grandkids_cancelled == 3);
  });
}

TEST_CASE("TaskGroup: children may spawn siblings while the group is joined", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> count{0};
    TaskGroup tg;
    std::function<void(int)> tree = [&](int depth) {
      ++count;
      if (depth == 0) return;
      for (int i = 0; i < 3; ++i) tg.spawn([&tree, depth] { tree(depth - 1); });
    };
    tg.spawn([&] { tree(4); });
    tg.join();
    CHECK(count == 1 + 3 + 9 + 27 + 81);
  });
}

TEST_CASE("TaskGroup destructor: waits; unjoined failures are reported; unwinding cancels", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  {
    test::Checked harness(test::opts(n, &reports), {.reports = true});  // the test checks its reports
    Runtime& rt = harness.rt;
    rt.block_on([] {
      std::atomic<bool> finished{false};
      {
        TaskGroup tg;
        tg.spawn([&] {
          sleep(5ms);
          finished = true;
        });
      }  // no join: the destructor waits
      CHECK(finished.load());
      {
        TaskGroup tg;
        tg.spawn([] { throw std::runtime_error("nobody joins me"); });
      }
      std::atomic<bool> cancelled{false};
      try {
        TaskGroup tg;
        auto k = tg.spawn([&] {
          try {
            forever();
          } catch (const CancelledError&) {
            cancelled = true;
            throw;
          }
        });
        until_suspended(k);
        throw std::domain_error("owner fails");
      } catch (const std::domain_error&) {
      }
      CHECK(cancelled.load());
    });
  }
  CHECK(reports.count(Report::Kind::unretrieved_exception) == 1);
}

TEST_CASE("task_group returns the block's value once the children are joined", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> done{0};
    const int v = task_group([&](TaskGroup& tg) {
      for (int i = 0; i < 4; ++i)
        tg.spawn([&] {
          sleep(1ms);
          ++done;
        });
      return 1;
    });
    CHECK(v == 1);
    CHECK(done == 4);
    try {
      task_group([](TaskGroup& tg) { tg.spawn([] { throw std::runtime_error("child"); }); });
      FAIL("expected ExceptionGroup");
    } catch (const ExceptionGroup& eg) {
      CHECK(eg.count<std::runtime_error>() == 1);
    }
  });
}

TEST_CASE("task_group folds the block's own failure; a spawn refused after a failure is left out", "[taskgroup]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    try {
      task_group([](TaskGroup& tg) {
        tg.spawn([] { throw std::runtime_error("child"); });
        for (;;) {  // spawns until the group refuses (it is shutting down)
          tg.spawn([] {});
          sleep(1ms);
        }
      });
      FAIL("expected ExceptionGroup");
    } catch (const ExceptionGroup& eg) {
      CHECK(eg.size() == 1);
      CHECK(eg.count<std::runtime_error>() == 1);
      CHECK(eg.count<TaskGroupClosed>() == 0);
    }
    try {
      task_group([](TaskGroup& tg) {
        tg.spawn(forever);
        throw std::invalid_argument("block");
      });
      FAIL("expected ExceptionGroup");
    } catch (const ExceptionGroup& eg) {
      CHECK(eg.size() == 1);
      CHECK(eg.count<std::invalid_argument>() == 1);
    }
  });
}

TEST_CASE("TaskGroup on a Runtime, used from a thread outside it", "[taskgroup]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  std::atomic<int> sum{0};
  TaskGroup tg(rt);
  for (int i = 0; i < 20; ++i) tg.spawn([&, i] { sum += i; });
  tg.join();
  CHECK(sum == 190);
}

TEST_CASE("TaskGroup under churn: every child ends before join returns", "[taskgroup][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    for (int round = 0; round < 30; ++round) {
      TaskGroup tg;
      std::vector<Task<>> kids;
      try {
        for (int i = 0; i < 40; ++i)
          kids.push_back(tg.spawn([round, i] {
            if (i % 5 == 0) yield();
            if (round % 3 == 0 && i == 17) throw std::runtime_error("x");
            if (i % 7 == 0) sleep(std::chrono::microseconds(200));
          }));
      } catch (const TaskGroupClosed&) {
        // child 17 failed before all were spawned: the group refuses new children
        REQUIRE(round % 3 == 0);
      }
      bool threw = false;
      try {
        tg.join();
      } catch (const ExceptionGroup& eg) {
        threw = true;
        CHECK(eg.size() >= 1);
      }
      CHECK(threw == (round % 3 == 0));
      for (auto& k : kids) REQUIRE(k.done());
    }
  });
}

// ---- JobScheduler ---------------------------------------------------------------------------

TEST_CASE("JobScheduler never runs more than `limit` jobs at once (counted under stress)", "[jobs][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    constexpr std::size_t limit = 5;
    std::atomic<int> running{0}, peak{0}, finished{0};
    JobScheduler jobs(limit, 0);
    std::vector<Job<int>> all;
    for (int i = 0; i < 600; ++i)
      all.push_back(jobs.spawn([&, i] {
        const int now = ++running;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        if (i % 3 == 0) yield();
        if (i % 5 == 0) sleep(std::chrono::microseconds(100));
        if (i % 2 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));  // really busy
        --running;
        ++finished;
        return i;
      }));
    CHECK(jobs.active_count() <= limit);
    jobs.wait();
    CHECK(finished == 600);
    CHECK(peak <= int(limit));
    CHECK(peak >= 1);
    CHECK(jobs.active_count() == 0);
    CHECK(jobs.pending_count() == 0);
    long sum = 0;
    for (auto& j : all) sum += j.get();
    CHECK(sum == 599L * 600 / 2);
  });
}

TEST_CASE("JobScheduler starts pending jobs in FIFO order", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::mutex mu;
    std::vector<int> order;
    Future<> gate;
    JobScheduler jobs(1, 0);
    auto first = jobs.spawn([gate]() mutable { gate.get(); });
    for (int i = 0; i < 10; ++i)
      jobs.spawn([&, i] {
        std::lock_guard lk(mu);
        order.push_back(i);
      });
    CHECK(jobs.active_count() == 1);
    CHECK(jobs.pending_count() == 10);
    gate.set_result();
    jobs.wait();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  });
}

TEST_CASE("JobScheduler: a full pending list makes spawn wait", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> gate;
    JobScheduler jobs(1, 2);
    std::atomic<int> spawned{0};
    auto spawner = spawn([&] {
      for (int i = 0; i < 5; ++i) {
        jobs.spawn([gate]() mutable { gate.get(); });
        ++spawned;
      }
    });
    until_suspended(spawner);  // it can suspend only in a spawn that waits for room
    CHECK(spawned == 3);       // 1 active + 2 pending: the 4th spawn waits
    CHECK(jobs.pending_count() == 2);
    CHECK_FALSE(spawner.done());
    gate.set_result();
    spawner.get();
    jobs.wait();
    CHECK(spawned == 5);
  });
}

TEST_CASE("JobScheduler: a spawn waiting for room is cancellable, and its job never runs", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> gate;
    JobScheduler jobs(1, 1);
    jobs.spawn([gate]() mutable { gate.get(); });
    jobs.spawn([] {});
    std::atomic<bool> ran{false};
    auto spawner = spawn([&] { jobs.spawn([&] { ran = true; }); });
    until_suspended(spawner);
    spawner.cancel();
    CHECK_THROWS_AS(spawner.get(), CancelledError);
    gate.set_result();
    jobs.wait();
    CHECK_FALSE(ran.load());
  });
}

TEST_CASE("Job: get, cancel while pending, cancel while active", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  {
    test::Checked harness(test::opts(n, &reports), {.reports = true});  // the test checks its reports
    Runtime& rt = harness.rt;
    rt.block_on([] {
      JobScheduler jobs(1, 0);
      auto a = jobs.spawn(forever);
      std::atomic<bool> b_ran{false};
      auto b = jobs.spawn([&] { b_ran = true; });
      CHECK(b.pending());
      CHECK(b.cancel("not needed"));
      try {
        b.get();
        FAIL("expected CancelledError");
      } catch (const CancelledError& e) {
        CHECK(e.message() == "not needed");
      }
      CHECK_FALSE(b.cancel());
      CHECK(a.active());
      CHECK(a.cancel());
      CHECK_THROWS_AS(a.get(), CancelledError);
      auto c = jobs.spawn([] { return 5; });
      CHECK(c.get() == 5);
      auto d = jobs.spawn([]() -> int { throw std::runtime_error("job failed"); });
      CHECK_THROWS_AS(d.get(), std::runtime_error);
      jobs.spawn([] { throw std::runtime_error("nobody looks"); });
      jobs.wait();
      CHECK_FALSE(b_ran.load());
    });
  }
  CHECK(reports.count(Report::Kind::unretrieved_exception) == 1);
}

TEST_CASE("Job::get: cancelling the waiter cancels the job", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    JobScheduler jobs(1, 0);
    auto busy = jobs.spawn(forever);
    auto queued = jobs.spawn([] { return 1; });  // pending behind `busy`
    auto waiter = spawn([queued]() mutable { return queued.get(); });
    until_suspended(waiter);
    waiter.cancel();
    CHECK_THROWS_AS(waiter.get(), CancelledError);
    CHECK(queued.cancelled());
    busy.cancel();
    jobs.wait();
  });
}

TEST_CASE("JobScheduler::close cancels pending and active jobs and waits", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::atomic<int> started{0}, cancelled{0};
    JobScheduler jobs(3, 0);
    std::vector<Job<>> all;
    for (int i = 0; i < 10; ++i)
      all.push_back(jobs.spawn([&] {
        ++started;
        try {
          forever();
        } catch (const CancelledError&) {
          sleep(1ms);
          ++cancelled;
          throw;
        }
      }));
    while (started < 3) yield();
    jobs.close();
    CHECK(jobs.closed());
    CHECK(started == 3);
    CHECK(cancelled == 3);
    for (auto& j : all) CHECK(j.cancelled());
    CHECK_THROWS_AS(jobs.spawn([] {}), RuntimeError);
    jobs.close();  // idempotent
  });
}

TEST_CASE("JobScheduler: the destructor closes; wait() is cancellable and leaves jobs alone", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Job<> j;
    {
      JobScheduler jobs(2, 0);
      j = jobs.spawn(forever);
      auto w = spawn([&] { jobs.wait(); });
      until_suspended(w);
      w.cancel();
      CHECK_THROWS_AS(w.get(), CancelledError);
      CHECK_FALSE(j.done());
    }
    CHECK(j.cancelled());
  });
}

TEST_CASE("JobScheduler on a Runtime, fed from a thread outside it", "[jobs]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  std::atomic<int> running{0}, peak{0};
  JobScheduler jobs(rt, 2, 4);
  for (int i = 0; i < 50; ++i)
    jobs.spawn([&] {
      const int now = ++running;
      int p = peak.load();
      while (now > p && !peak.compare_exchange_weak(p, now)) {
      }
      sleep(std::chrono::microseconds(300));
      --running;
    });
  jobs.wait();
  CHECK(peak <= 2);
}

TEST_CASE("JobScheduler: many spawners, cancels and a close under churn", "[jobs][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    constexpr std::size_t limit = 3;
    std::atomic<int> running{0}, peak{0};
    JobScheduler jobs(limit, 8);
    TaskGroup spawners;
    std::mutex mu;
    std::vector<Job<>> all;
    for (int s = 0; s < 6; ++s)
      spawners.spawn([&, s] {
        for (int i = 0; i < 60; ++i) {
          auto j = jobs.spawn([&, i] {
            const int now = ++running;
            int p = peak.load();
            while (now > p && !peak.compare_exchange_weak(p, now)) {
            }
            struct Dec {
              std::atomic<int>& r;
              ~Dec() { --r; }
            } dec{running};
            if (i % 4 == 0)
              sleep(std::chrono::microseconds(50));
            else
              yield();
          });
          if ((s + i) % 7 == 0) j.cancel();
          std::lock_guard lk(mu);
          all.push_back(j);
        }
      });
    spawners.join();
    jobs.close();
    CHECK(peak <= int(limit));
    for (auto& j : all) CHECK(j.done());
  });
}
