// Debug mode's slow-step report at its threshold: a step only a little longer than
// slow_step is reported, once (the watchdog samples every quarter of slow_step and timed
// a step from the first sample that saw it, so such a step ended unreported), and a
// step well under slow_step is not.
#include <chrono>
#include <string>
#include <vector>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

std::size_t slow_reports(test::Reports& r, const std::string& task) {
  std::size_t n = 0;
  for (auto& x : r.all()) n += x.kind == Report::Kind::slow_step && x.task_name == task;
  return n;
}

// Busy on the CPU, without a suspension point, for d by the clock.
void busy_for(std::chrono::nanoseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
  }
}

}  // namespace

TEST_CASE("debug mode: a step 1.2x slow_step is reported exactly once; one under half of it is not",
          "[debug][slow_step]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  Options o = test::opts(n, &reports);
  o.debug = true;
  o.slow_step = 100ms;
  Runtime rt(o);
  constexpr int kRounds = 5;  // the old watchdog missed such a step most of the time
  rt.block_on([&] {
    for (int i = 0; i < kRounds; ++i) {
      spawn(TaskOptions{.name = "a-bit-slow"}, [] {
        yield();  // the step below starts at a resumption, as most steps do
        busy_for(120ms);
      }).get();
      spawn(TaskOptions{.name = "quick"}, [] {
        yield();
        busy_for(20ms);
      }).get();
    }
  });
  rt.shutdown();  // every report is in
  CHECK(slow_reports(reports, "a-bit-slow") == kRounds);
  CHECK(slow_reports(reports, "quick") == 0);
}
