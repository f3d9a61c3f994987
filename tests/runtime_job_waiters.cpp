// JobScheduler's line of spawns waiting for room in the pending list: a long line keeps its
// order, a cancelled spawn leaves it wherever it stands (head, middle, tail), and close()
// sends every spawn still waiting away with RuntimeError.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include <spindle/job_scheduler.hpp>

#include "support.hpp"

using namespace spindle;
using test::until_suspended;

namespace {

constexpr int kLine = 200;

bool cancelled_in_line(int i) { return i == 0 || i == kLine / 2 || i == kLine - 1 || i % 7 == 3; }

// A scheduler with its one slot held until `gate` opens and its one pending place
// taken, and kLine spawners in line behind it, in order: spawner i spawns job(i).
template <class Job>
std::vector<Task<>> form_line(JobScheduler& jobs, Future<> gate, Job job) {
  jobs.spawn([gate]() mutable { gate.get(); });
  jobs.spawn([] {});
  std::vector<Task<>> spawners;
  for (int i = 0; i < kLine; ++i) {
    spawners.push_back(spawn([&jobs, job, i] { jobs.spawn([job, i] { job(i); }); }));
    until_suspended(spawners.back());  // in line, behind every spawner before it
  }
  return spawners;
}

}  // namespace

TEST_CASE("JobScheduler: a long line of spawns waiting for room is served in order; cancelled ones leave it",
          "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::mutex mu;
    std::vector<int> order;
    Future<> gate;
    JobScheduler jobs(1, 1);
    std::atomic<int> ran_cancelled{0};
    auto spawners = form_line(jobs, gate, [&](int i) {
      if (cancelled_in_line(i)) ++ran_cancelled;
      std::lock_guard lk(mu);
      order.push_back(i);
    });
    CHECK(jobs.pending_count() == 1);
    for (int i = 0; i < kLine; ++i)
      if (cancelled_in_line(i)) spawners[i].cancel();
    for (int i = 0; i < kLine; ++i)
      if (cancelled_in_line(i)) CHECK_THROWS_AS(spawners[i].get(), CancelledError);
    gate.set_result();
    std::vector<int> expected;
    for (int i = 0; i < kLine; ++i) {
      if (cancelled_in_line(i)) continue;
      expected.push_back(i);
      spawners[i].get();
    }
    jobs.wait();
    CHECK(ran_cancelled == 0);
    CHECK(order == expected);
  });
}

TEST_CASE("JobScheduler: close() sends the whole line away with RuntimeError, after some left it cancelled", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<> gate;
    JobScheduler jobs(1, 1);
    std::atomic<int> ran{0};
    auto spawners = form_line(jobs, gate, [&](int) { ++ran; });
    for (int i = 0; i < kLine; ++i)
      if (cancelled_in_line(i)) spawners[i].cancel();
    // Out of the line before the close (a cancel and a close that both come before the
    // spawner runs again may end its spawn either way).
    for (int i = 0; i < kLine; ++i)
      if (cancelled_in_line(i)) CHECK_THROWS_AS(spawners[i].get(), CancelledError);
    auto closer = spawn([&] { jobs.close(); });  // cancels the gate's job and the pending one
    for (int i = 0; i < kLine; ++i)
      if (!cancelled_in_line(i)) CHECK_THROWS_AS(spawners[i].get(), RuntimeError);
    closer.get();
    CHECK(ran == 0);
    CHECK(jobs.closed());
    CHECK(jobs.pending_count() == 0);
    CHECK(jobs.active_count() == 0);
  });
}

TEST_CASE("JobScheduler: a spawn woken for a place and cancelled before it runs passes the place on", "[jobs]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    for (int round = 0; round < 20; ++round) {
      Future<> gate;
      JobScheduler jobs(1, 1);
      std::atomic<int> ran{0};
      auto spawners = form_line(jobs, gate, [&](int) { ++ran; });
      // The gate's job ends and the place goes to the head of the line (spawner 0),
      // which may be cancelled before or after it is woken for it: either way, no place
      // is lost and the rest of the line is served.
      gate.set_result();
      spawners[0].cancel();
      bool head_spawned = true;
      try {
        spawners[0].get();
      } catch (const CancelledError&) {
        head_spawned = false;
      }
      for (int i = 1; i < kLine; ++i) spawners[i].get();
      jobs.wait();
      CHECK(ran == kLine - 1 + (head_spawned ? 1 : 0));
    }
  });
}

TEST_CASE("JobScheduler: threads outside the runtime spawning into a full scheduler as it shuts down all return",
          "[jobs][shutdown]") {
  const unsigned n = SPINDLE_WORKERS();
  for (int round = 0; round < 5; ++round) {
    std::atomic<int> ran{0}, returned{0}, refused{0};
    Runtime rt(test::opts(n));
    {
      JobScheduler jobs(rt, 1, 1);
      Future<> gate;  // never set: its job holds the slot until the shutdown cancels it
      jobs.spawn([gate]() mutable { gate.get(); });
      jobs.spawn([] {});  // and the pending place is taken: every spawn below waits for room
      std::vector<std::thread> threads;
      for (int k = 0; k < 4; ++k)
        threads.emplace_back([&] {
          for (int i = 0; i < 5; ++i) {
            try {
              jobs.spawn([&] { ++ran; });
              ++returned;
            } catch (const RuntimeError&) {
              ++refused;  // the scheduler was closed or the runtime shut down
            }
          }
        });
      rt.shutdown();
      for (auto& t : threads) t.join();  // none is left waiting
      CHECK(returned + refused == 20);
      CHECK(ran <= returned);
    }
  }
}
