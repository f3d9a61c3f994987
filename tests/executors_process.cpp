// ProcessPool: registered functions run in worker processes (this test binary, re-run
// with SPINDLE_PROCESS_WORKER set: the static initialiser at the end of the
// registrations below serves calls and exits before Catch2's main runs).
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <string>
#include <utility>
#include <vector>

#include <spindle/executors/process_pool.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int add(int a, int b) { return a + b; }
std::string greet(std::string who, std::vector<int> v) {
  return "hello " + who + " " + std::to_string(v.size());
}
// Spins on the CPU for `ms` and returns when it ran: [start, end] in CLOCK_MONOTONIC ns
// (one clock for every process of the machine), so the test can count overlap.
std::pair<int64_t, int64_t> burn(int ms) {
  const int64_t start = now_ns();
  volatile uint64_t x = 0;
  while (now_ns() - start < int64_t(ms) * 1'000'000) x = x + 1;
  return {start, now_ns()};
}
int crash_abort(int) { std::abort(); }
int crash_kill(int) {
  ::kill(::getpid(), SIGKILL);
  return 0;
}
int throws(int) { throw std::runtime_error("bad input"); }
std::vector<char> echo_bytes(std::vector<char> v) {
  for (auto& c : v) c = char(c + 1);
  return v;
}
int sleepy(int ms) {
  ::usleep(useconds_t(ms) * 1000);
  return ms;
}
std::string not_an_int() { return "abc"; }

SPINDLE_PROCESS_FUNCTION(add);
SPINDLE_PROCESS_FUNCTION(greet);
SPINDLE_PROCESS_FUNCTION(burn);
SPINDLE_PROCESS_FUNCTION(crash_abort);
SPINDLE_PROCESS_FUNCTION(crash_kill);
SPINDLE_PROCESS_FUNCTION(throws);
SPINDLE_PROCESS_FUNCTION(echo_bytes);
SPINDLE_PROCESS_FUNCTION(sleepy);
SPINDLE_PROCESS_FUNCTION(not_an_int);

// After the registrations: in a worker process this never returns.
const bool served = (serve_process_worker(), true);

}  // namespace

TEST_CASE("ProcessPool runs registered functions and returns their results", "[executors][process]") {
  REQUIRE(served);
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 2});
  auto [a, g] = rt.block_on([&] {
    return std::pair{pool.call<int>("add", 2, 40), pool.call<std::string>("greet", std::string("you"), std::vector<int>{1, 2, 3})};
  });
  CHECK(a == 42);
  CHECK(g == "hello you 3");
  CHECK(pool.call<int>("add", 1, 1) == 2);  // from a foreign thread: blocks it
  CHECK(pool.processes() >= 1);
  CHECK(pool.processes() <= 2);
}

TEST_CASE("ProcessPool runs CPU-bound calls in parallel over its workers", "[executors][process]") {
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 2});
  auto spans = rt.block_on([&] {
    std::vector<Task<std::pair<int64_t, int64_t>>> ts;
    for (int i = 0; i < 4; ++i)
      ts.push_back(spawn([&] { return pool.call<std::pair<int64_t, int64_t>>("burn", 150); }));
    std::vector<std::pair<int64_t, int64_t>> out;
    for (auto& t : ts) out.push_back(t.get());
    return out;
  });
  // Count pairs of calls whose spans overlap: with two workers, some must.
  int overlaps = 0;
  for (std::size_t i = 0; i < spans.size(); ++i)
    for (std::size_t j = i + 1; j < spans.size(); ++j)
      overlaps += spans[i].first < spans[j].second && spans[j].first < spans[i].second;
  CHECK(overlaps >= 1);
  CHECK(pool.processes() == 2);
}

TEST_CASE("a worker that aborts or is killed fails its call with BrokenProcessPool and is replaced",
          "[executors][process]") {
  ProcessPool pool({.workers = 1});
  const char* fn = GENERATE("crash_abort", "crash_kill");
  CHECK_THROWS_AS(pool.call<int>(fn, 0), BrokenProcessPool);
  CHECK(pool.call<int>("add", 3, 4) == 7);
  CHECK(pool.processes() == 1);
}

TEST_CASE("ProcessPool errors: exceptions, unknown names, undecodable results, timeouts, shutdown",
          "[executors][process]") {
  ProcessPool pool({.workers = 1, .timeout = 300ms});
  try {
    pool.call<int>("throws", 1);
    FAIL("no exception");
  } catch (const ProcessError& e) {
    CHECK(std::string(e.what()) == "throws: bad input");
  }
  try {
    pool.call<int>("no_such_function", 1);
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("'no_such_function'") != std::string::npos);
  }
  try {
    pool.call<int>("not_an_int");
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("'not_an_int'") != std::string::npos);
  }
  CHECK(pool.call<int>("add", 1, 2) == 3);  // the next call is not corrupted
  CHECK_THROWS_AS(pool.call<int>("sleepy", 5000), TimeoutError);
  CHECK(pool.call<int>("sleepy", 1) == 1);  // a new worker replaced the killed one
  pool.shutdown();
  CHECK(pool.processes() == 0);
  CHECK_THROWS_AS(pool.call<int>("add", 1, 2), BrokenExecutor);
  CHECK_THROWS_AS(ProcessPool({.executable = ""}), std::invalid_argument);
}

TEST_CASE("ProcessPool refuses 0 workers; the default is one per CPU", "[executors][process]") {
  CHECK_THROWS_AS(ProcessPool({.workers = 0}), std::invalid_argument);
  ProcessPool pool;
  CHECK(pool.workers() == std::max(1u, std::thread::hardware_concurrency()));
  CHECK(pool.processes() == 0);  // started on demand
}

TEST_CASE("a result that cannot be decoded fails that call, naming the function, and no other",
          "[executors][process]") {
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 1});
  // Each bad decode (too few bytes, too many, a length prefix past the end) is followed
  // by a good call on the same worker: the bad reply was consumed whole.
  auto outcome = [&](auto call) -> std::string {
    return rt.block_on([&] {
      try {
        call();
        return std::string("no exception");
      } catch (const std::runtime_error& e) {
        return std::string(e.what());
      }
    });
  };
  const std::string too_short = outcome([&] { (void)pool.call<std::pair<int64_t, int64_t>>("add", 1, 2); });
  CHECK(too_short.find("'add'") != std::string::npos);
  CHECK(rt.block_on([&] { return pool.call<int>("add", 2, 3); }) == 5);
  const std::string too_long = outcome([&] { (void)pool.call<char>("add", 1, 2); });
  CHECK(too_long.find("'add'") != std::string::npos);
  CHECK(rt.block_on([&] { return pool.call<int>("add", 3, 4); }) == 7);
  // "abc" as a vector<int64_t>: its u64 length (3) promises 24 bytes, 3 follow.
  const std::string bad_length = outcome([&] { (void)pool.call<std::vector<int64_t>>("not_an_int"); });
  CHECK(bad_length.find("'not_an_int'") != std::string::npos);
  CHECK(rt.block_on([&] { return pool.call<std::string>("not_an_int"); }) == "abc");
  CHECK(pool.processes() == 1);  // no worker was lost over it
}

TEST_CASE("ProcessPool round-trips a 64 MiB payload", "[executors][process]") {
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 1});
  const std::size_t n = std::size_t(64) << 20;
  const bool ok = rt.block_on([&] {
    std::vector<char> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = char(i * 7);
    const std::vector<char> r = pool.call<std::vector<char>>("echo_bytes", v);
    if (r.size() != n) return false;
    for (std::size_t i = 0; i < n; ++i)
      if (r[i] != char(char(i * 7) + 1)) return false;
    return true;
  });
  CHECK(ok);
}

TEST_CASE("cancelling a task waiting on a process call abandons it; the pool stays healthy",
          "[executors][process]") {
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 1});
  auto t = rt.spawn([&] { return pool.call<int>("sleepy", 200); });
  test::until_suspended(t);  // the call is in flight
  CHECK(t.cancel());
  CHECK_THROWS_AS(t.get(), CancelledError);
  CHECK(pool.call<int>("add", 20, 22) == 42);  // queued behind the abandoned call
}
