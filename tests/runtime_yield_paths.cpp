// yield() has a fast path (a task that is not pinned, no cancellation pending, no step
// hooks, no exception state to keep) and a general one for everything else; both must
// leave a task in the same state. These cases check what the fast path must still do
// itself: record where the task yielded, and share its loop fairly with pinned
// yielders (which take the general path) without moving them off their loop.
#include <spindle/monitor.hpp>
#include <spindle/spindle.hpp>

#include <atomic>
#include <cstdint>
#include <source_location>
#include <string>
#include <vector>

#include "support.hpp"

using namespace spindle;

TEST_CASE("a yield records where it was made, on the fast path and the general one", "[yield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  h.block_on([&] {
    // Free yielders (the fast path) and pinned ones (the general path), each kind
    // yielding at its own location. More free yielders than loops, so that at any moment
    // some loop holds two and one of them is queued (a running task reports no location).
    static constexpr std::source_location kFreeAt = std::source_location::current();
    static constexpr std::source_location kPinnedAt = std::source_location::current();
    const int home = int(n - 1);
    const int free_n = int(2 * n + 2), pinned_n = 2;
    std::atomic<bool> stop{false};
    std::vector<Task<>> ts;
    for (int i = 0; i < free_n + pinned_n; ++i) {
      TaskOptions o{.name = "yielder"};
      if (i >= free_n) {
        o.pinned = true;
        o.loop = home;
      }
      const std::source_location at = i < free_n ? kFreeAt : kPinnedAt;
      ts.push_back(spawn(o, [&stop, at] {
        while (!stop.load(std::memory_order_acquire)) yield(at);
      }));
    }
    // On the home loop: whenever it runs, the pinned yielders are queued there.
    spawn(TaskOptions{.name = "observer", .pinned = true, .loop = home}, [&] {
      int seen_free = 0, seen_pinned = 0;
      while (seen_free < 10 || seen_pinned < 10) {
        for (int i = 0; i < free_n + pinned_n; ++i) {
          const TaskWhere w = ts[i].where();
          if (!w.started || w.state != TaskState::ready) continue;  // not yet, or running now
          const std::source_location& at = i < free_n ? kFreeAt : kPinnedAt;
          CHECK(w.line == at.line());
          CHECK(w.function == at.function_name());
          ++(i < free_n ? seen_free : seen_pinned);
        }
        yield();
      }
      stop.store(true, std::memory_order_release);
    }).get();
    for (auto& t : ts) t.get();
  });
}

TEST_CASE("pinned and unpinned yielders on one loop all get their turns; the pinned stay home", "[yield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  h.block_on([&] {
    constexpr int kEach = 3;
    const int home = int(n - 1);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> turns[2 * kEach] = {};
    std::vector<Task<>> ts;
    // Unpinned ones spawned from the home loop start there (others may steal them);
    // pinned ones only ever run there.
    spawn(TaskOptions{.pinned = true, .loop = home}, [&] {
      for (int i = 0; i < 2 * kEach; ++i) {
        TaskOptions o{.name = i < kEach ? "free" : "pinned"};
        if (i >= kEach) {
          o.pinned = true;
          o.loop = home;
        }
        ts.push_back(spawn(o, [&, i] {
          while (!stop.load(std::memory_order_acquire)) {
            turns[i].fetch_add(1, std::memory_order_relaxed);
            yield();
          }
        }));
      }
    }).get();
    // An observer on the home loop: whenever it runs, every pinned yielder there is
    // queued, and it must get its turn as well as the free ones.
    spawn(TaskOptions{.name = "observer", .pinned = true, .loop = home}, [&] {
      for (int round = 0; round < 3; ++round) {
        uint64_t before[2 * kEach];
        for (int i = 0; i < 2 * kEach; ++i) before[i] = turns[i].load(std::memory_order_relaxed);
        for (int i = 0; i < 2 * kEach; ++i)
          while (turns[i].load(std::memory_order_relaxed) == before[i]) yield();
        for (const TaskInfo& info : task_infos())
          if (info.name == "pinned") CHECK(info.loop == home);
      }
      stop.store(true, std::memory_order_release);
    }).get();
    for (auto& t : ts) t.get();
  });
}
