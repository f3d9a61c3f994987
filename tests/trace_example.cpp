// A program whose schedule is known, traced into argv[1] over argv[2] loops, for the
// trace_report test (tests/trace_report_check.py): "sleeper" sleeps 5 times (6 steps, 5
// timer wake-ups), "waiter" waits once on an Event that "setter" sets (2 steps, 1
// wake-up), 8 "yielder" tasks yield 3 times each (32 steps), and one to_thread job runs.
#include <spindle/spindle.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: trace_example TRACE WORKERS\n");
    return 2;
  }
  spindle::Options o{.workers = unsigned(std::atoi(argv[2]))};
  o.trace = argv[1];
  spindle::run(
      [] {
        using spindle::TaskOptions;
        auto sleeper = spindle::spawn(TaskOptions{.name = "sleeper"}, [] {
          for (int i = 0; i < 5; ++i) spindle::sleep(std::chrono::milliseconds(1));
        });
        spindle::Event ev;
        auto waiter = spindle::spawn(TaskOptions{.name = "waiter"}, [&] { ev.wait(); });
        auto setter = spindle::spawn(TaskOptions{.name = "setter"}, [&] {
          // Set only once the waiter waits, so that it has two steps.
          for (;;) {
            const spindle::TaskWhere w = waiter.where();
            if (w.started && w.state != spindle::TaskState::running) break;
            spindle::yield();
          }
          ev.set();
        });
        std::vector<spindle::Task<>> ys;
        for (int i = 0; i < 8; ++i)
          ys.push_back(spindle::spawn(TaskOptions{.name = "yielder"}, [] {
            for (int k = 0; k < 3; ++k) spindle::yield();
          }));
        const int v = spindle::to_thread([] { return 42; });
        sleeper.get();
        waiter.get();
        setter.get();
        for (auto& y : ys) y.get();
        return v;
      },
      o);
  return 0;
}
