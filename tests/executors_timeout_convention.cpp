// The timeout convention (TimeLimit, time_limit.hpp) in the executors: none and durations
// too large for the clock are no limit; zero and negative have already passed.
//   - ProcessPoolOptions::timeout: a call with an expired limit throws TimeoutError
//     without reaching a worker (none is started), as wait_for(fn, 0) never runs fn;
//   - ThreadPool::shutdown_for: an expired limit only looks whether the threads are done;
//   - ThreadPoolOptions::keep_alive: an expired one lets an idle thread go at once, none
//     keeps it until shutdown.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <spindle/executors/process_pool.hpp>
#include <spindle/executors/thread_pool.hpp>

#include "support.hpp"
#include "timeout_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using test::expired;
using test::show;
using test::unlimited;

namespace {

int nap_impl(int ms) {
  ::usleep(useconds_t(ms) * 1000);
  return ms;
}
const auto nap = process_function("nap", &nap_impl);

// After the registrations: in a worker process this never returns.
const bool served = (serve_process_worker(), true);

// Polls `cond` for up to 10 s (a bound for a broken build, not a timing assertion).
template <class F>
bool eventually(F cond) {
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_CASE("ProcessPool: none and huge timeouts run calls to the end, zero and negative never start one",
          "[executors][timeout][process]") {
  REQUIRE(served);
  for (TimeLimit t : unlimited()) {
    INFO(show(t));
    ProcessPool pool({.workers = 1, .timeout = t});
    CHECK(pool.call(nap, 20) == 20);  // from a thread
    Runtime rt(test::opts(2));
    CHECK(rt.block_on([&] { return pool.call(nap, 20); }) == 20);  // from a task
  }
  for (TimeLimit t : expired()) {
    INFO(show(t));
    ProcessPool pool({.workers = 1, .timeout = t});
    CHECK_THROWS_AS(pool.call(nap, 20), TimeoutError);
    Runtime rt(test::opts(2));
    CHECK_THROWS_AS(rt.block_on([&] { return pool.call(nap, 20); }), TimeoutError);
    CHECK(pool.processes() == 0);  // no worker was started, none was killed
  }
}

TEST_CASE("ThreadPool::shutdown_for: none and huge wait for the jobs, zero and negative only look",
          "[executors][timeout]") {
  for (TimeLimit t : unlimited()) {
    INFO(show(t));
    ThreadPool pool(2);
    std::atomic<int> ran{0};
    for (int i = 0; i < 4; ++i) {
      pool.submit([&] {
        std::this_thread::sleep_for(5ms);
        ran.fetch_add(1);  // seq_cst: a test counter
      });
    }
    CHECK(pool.shutdown_for(t));
    CHECK(ran.load() == 4);
  }
  for (TimeLimit t : expired()) {
    INFO(show(t));
    {
      ThreadPool idle(2);  // no thread ever started: nothing to wait for
      CHECK(idle.shutdown_for(t));
    }
    std::atomic<bool> started{false}, release{false}, done{false};
    {
      ThreadPool pool(1);
      pool.submit([&] {
        started.store(true);
        while (!release.load()) std::this_thread::sleep_for(1ms);
        done.store(true);
      });
      REQUIRE(eventually([&] { return started.load(); }));
      CHECK_FALSE(pool.shutdown_for(t));  // the job still runs: its thread is detached
    }
    release.store(true);
    CHECK(eventually([&] { return done.load(); }));
  }
}

TEST_CASE("ThreadPool keep_alive: none and huge keep an idle thread, zero and negative let it go",
          "[executors][timeout]") {
  for (TimeLimit t : unlimited()) {
    INFO(show(t));
    ThreadPool pool(ThreadPoolOptions{.max_workers = 1, .keep_alive = t, .spin = 0us});
    std::atomic<bool> ran{false};
    pool.submit([&] { ran.store(true); });
    REQUIRE(eventually([&] { return ran.load() && pool.busy() == 0; }));
    CHECK(pool.threads() == 1);  // idle, kept
    CHECK(pool.shutdown_for(std::nullopt));
    CHECK(pool.threads() == 0);
  }
  for (TimeLimit t : expired()) {
    INFO(show(t));
    ThreadPool pool(ThreadPoolOptions{.max_workers = 1, .keep_alive = t, .spin = 0us});
    std::atomic<int> ran{0};
    pool.submit([&] { ran.fetch_add(1); });
    CHECK(eventually([&] { return pool.threads() == 0; }));  // gone as soon as idle
    pool.submit([&] { ran.fetch_add(1); });                  // a new thread takes it
    CHECK(eventually([&] { return ran.load() == 2; }));
  }
}
