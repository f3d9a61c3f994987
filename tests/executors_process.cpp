// ProcessPool: registered functions run in worker processes (this test binary, re-run
// with SPINDLE_PROCESS_WORKER set: the static initialiser at the end of the
// registrations below serves calls and exits before Catch2's main runs). What a call
// whose types do not match its function gets is checked at compile time
// (tests/compile_fail.cpp) and, against workers that are another program, in
// executors_process_adversity.cpp.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <spindle/executors/process_pool.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

namespace impl {
int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int add(int a, int b) { return a + b; }
std::string greet(std::string who, std::vector<int> v) { return "hello " + who + " " + std::to_string(v.size()); }
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
double half(double x) { return x / 2; }
void nothing() {}
}  // namespace impl

const auto add = process_function("add", &impl::add);
const auto greet = process_function("greet", &impl::greet);
const auto burn = process_function("burn", &impl::burn);
const auto crash_abort = process_function("crash_abort", &impl::crash_abort);
const auto crash_kill = process_function("crash_kill", &impl::crash_kill);
const auto throws = process_function("throws", &impl::throws);
const auto echo_bytes = process_function("echo_bytes", &impl::echo_bytes);
const auto sleepy = process_function("sleepy", &impl::sleepy);
const auto half = process_function("half", &impl::half);
const auto nothing = process_function("nothing", &impl::nothing);
const auto cube = process_function<long(long)>("cube", [](long x) { return x * x * x; });

// After the registrations: in a worker process this never returns.
const bool served = (serve_process_worker(), true);

}  // namespace

TEST_CASE("ProcessPool runs registered functions and returns their results", "[executors][process]") {
  REQUIRE(served);
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 2});
  auto [a, g] = rt.block_on([&] {
    return std::pair{pool.call(add, 2, 40), pool.call(greet, std::string("you"), std::vector<int>{1, 2, 3})};
  });
  CHECK(a == 42);
  CHECK(g == "hello you 3");
  CHECK(pool.call(add, 1, 1) == 2);  // from a foreign thread: blocks it
  CHECK(pool.processes() >= 1);
  CHECK(pool.processes() <= 2);
}

TEST_CASE("ProcessPool runs CPU-bound calls in parallel over its workers", "[executors][process]") {
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 2});
  auto spans = rt.block_on([&] {
    std::vector<Task<std::pair<int64_t, int64_t>>> ts;
    for (int i = 0; i < 4; ++i) ts.push_back(spawn([&] { return pool.call(burn, 150); }));
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
  const auto fn = GENERATE(crash_abort, crash_kill);
  INFO(fn.name());
  CHECK_THROWS_AS(pool.call(fn, 0), BrokenProcessPool);
  CHECK(pool.call(add, 3, 4) == 7);
  CHECK(pool.processes() == 1);
}

TEST_CASE("a call converts its arguments to the function's parameters, as a call of the function does",
          "[executors][process]") {
  REQUIRE(served);
  ProcessPool pool({.workers = 1});
  // A string literal and a const char* to std::string; an int to a double or a long;
  // a float to a double.
  const char* who = "me";
  CHECK(pool.call(greet, "you", std::vector<int>{1}) == "hello you 1");
  CHECK(pool.call(greet, who, std::vector<int>{}) == "hello me 0");
  CHECK(pool.call(half, 3) == 1.5);
  CHECK(pool.call(half, 0.5f) == 0.25);
  CHECK(pool.call(cube, 3) == 27L);  // a lambda registered with its signature
  pool.call(nothing);
  static_assert(std::is_same_v<decltype(pool.call(nothing)), void>);
  static_assert(std::is_same_v<decltype(pool.call(greet, "", std::vector<int>{})), std::string>);
}

TEST_CASE("the same function registered again under its name is the same registration; another one is refused",
          "[executors][process]") {
  // `add` is registered above; once more here, as a header's non-inline handle would be
  // in each file that includes it.
  const auto again = process_function("add", &impl::add);
  ProcessPool pool({.workers = 1});
  CHECK(pool.call(again, 20, 22) == 42);
  CHECK_THROWS_AS(process_function("add", &impl::sleepy), std::invalid_argument);
  CHECK_THROWS_AS(process_function<int(int, int)>("add", [](int a, int b) { return a - b; }), std::invalid_argument);
  CHECK_THROWS_AS(process_function("", &impl::sleepy), std::invalid_argument);
}

TEST_CASE("ProcessPool errors: exceptions, timeouts, shutdown", "[executors][process]") {
  ProcessPool pool({.workers = 1, .timeout = 300ms});
  try {
    pool.call(throws, 1);
    FAIL("no exception");
  } catch (const ProcessError& e) {
    CHECK(std::string(e.what()) == "throws: bad input");
  }
  CHECK(pool.call(add, 1, 2) == 3);  // the next call is not corrupted
  CHECK_THROWS_AS(pool.call(sleepy, 5000), TimeoutError);
  CHECK(pool.call(sleepy, 1) == 1);  // a new worker replaced the killed one
  pool.shutdown();
  CHECK(pool.processes() == 0);
  CHECK_THROWS_AS(pool.call(add, 1, 2), BrokenExecutor);
  CHECK_THROWS_AS(ProcessPool({.executable = ""}), std::invalid_argument);
}

TEST_CASE("ProcessPool refuses 0 workers; the default is one per CPU", "[executors][process]") {
  CHECK_THROWS_AS(ProcessPool({.workers = 0}), std::invalid_argument);
  ProcessPool pool;
  CHECK(pool.workers() == std::max(1u, std::thread::hardware_concurrency()));
  CHECK(pool.processes() == 0);  // started on demand
}

TEST_CASE("ProcessPool round-trips a 64 MiB payload", "[executors][process]") {
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 1});
  const std::size_t n = std::size_t(64) << 20;
  const bool ok = rt.block_on([&] {
    std::vector<char> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = char(i * 7);
    const std::vector<char> r = pool.call(echo_bytes, v);
    if (r.size() != n) return false;
    for (std::size_t i = 0; i < n; ++i)
      if (r[i] != char(char(i * 7) + 1)) return false;
    return true;
  });
  CHECK(ok);
}

TEST_CASE("cancelling a task waiting on a process call abandons it; the pool stays healthy", "[executors][process]") {
  test::Checked harness(2);  // first: the pool goes before the checks
  Runtime& rt = harness.rt;
  ProcessPool pool({.workers = 1});
  auto t = rt.spawn([&] { return pool.call(sleepy, 200); });
  test::until_suspended(t);  // the call is in flight
  CHECK(t.cancel());
  CHECK_THROWS_AS(t.get(), CancelledError);
  CHECK(pool.call(add, 20, 22) == 42);  // queued behind the abandoned call
}
