// Debug mode (Options::debug): a task step that runs longer than Options::slow_step
// without reaching a suspension point is reported, while the other loops go on running
// the blocked loop's queued tasks by stealing them.
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::vector<Report> slow_steps(test::Reports& r) {
  std::vector<Report> out;
  for (auto& x : r.all())
    if (x.kind == Report::Kind::slow_step) out.push_back(x);
  return out;
}
}  // namespace

TEST_CASE("debug mode: a long step is reported with its task and where it resumed; other loops run its queue",
          "[debug]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  Options o = test::opts(n, &reports);
  o.debug = true;
  o.slow_step = 50ms;
  test::Checked harness(o);
  Runtime& rt = harness.rt;
  constexpr int kTasks = 100;
  std::atomic<int> ran{0};
  int resumed_line = 0;
  bool saw_report = false, all_ran = false;
  rt.block_on([&] {
    TaskOptions hog{.name = "hog", .pinned = true, .loop = 0};
    spawn(hog, [&] {
      sleep(1ms);  // the step below resumes here
      resumed_line = __LINE__ - 1;
      // Queued on this loop, which now does not yield: only other loops can run them.
      std::vector<Task<>> ts;
      for (int i = 0; i < kTasks; ++i) ts.push_back(spawn([&] { ++ran; }));
      const auto give_up = std::chrono::steady_clock::now() + 30s;
      while (std::chrono::steady_clock::now() < give_up) {
        saw_report = !slow_steps(reports).empty();
        all_ran = ran.load() == kTasks;
        if (saw_report && (all_ran || n == 1)) break;
      }
      for (auto& t : ts) t.get();
    }).get();
  });
  REQUIRE(saw_report);
  if (n > 1) CHECK(all_ran);  // run by the other loops while loop 0 was stuck
  CHECK(ran.load() == kTasks);
  // Once per step. (On a loaded machine another task's step may also be stretched past
  // 50 ms by the OS; those reports are fine, only the hog's are counted.)
  std::vector<Report> r;
  for (auto& x : slow_steps(reports))
    if (x.task_name == "hog") r.push_back(x);
  REQUIRE(r.size() == 1);
  CHECK(r[0].task_name == "hog");
  INFO(r[0].message);
  CHECK(contains(r[0].message, "runtime_debug.cpp:" + std::to_string(resumed_line)));
  CHECK(contains(r[0].message, "loop 0"));
  CHECK(contains(r[0].message, "slow_step is 50 ms"));
}

TEST_CASE("debug mode: short steps are not reported, however long the task runs in total", "[debug]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  Options o = test::opts(n, &reports);
  o.debug = true;
  o.slow_step = 2s;  // far above one step below, even on a loaded machine
  test::Checked harness(o);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    spawn(TaskOptions{.name = "polite"}, [] {
      const auto end = std::chrono::steady_clock::now() + 300ms;
      while (std::chrono::steady_clock::now() < end) yield();
    }).get();
  });
  rt.shutdown();
  CHECK(slow_steps(reports).empty());
}

TEST_CASE("debug mode off: nothing is watched, a long step is not reported", "[debug]") {
  test::Reports reports;
  Options o = test::opts(2, &reports);
  o.slow_step = 10ms;  // ignored without debug
  test::Checked harness(o);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    spawn([] {
      const auto end = std::chrono::steady_clock::now() + 100ms;
      while (std::chrono::steady_clock::now() < end) {
      }
    }).get();
  });
  rt.shutdown();
  CHECK(slow_steps(reports).empty());
}

TEST_CASE("debug mode: a slow_step that is not positive is refused", "[debug]") {
  Options o = test::opts(1);
  o.debug = true;
  o.slow_step = 0ms;
  CHECK_THROWS_AS(Runtime(o), std::invalid_argument);
  o.slow_step = -5ms;
  try {
    Runtime rt(o);
    FAIL("a negative slow_step was accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(contains(e.what(), "slow_step"));
  }
}
