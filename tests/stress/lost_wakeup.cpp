// Wake-ups that must never be lost, run against an optimized copy of the library.
//
// The race this guards against needs optimized code's timing: a waker's store of the
// signal still sits in its CPU's store buffer while its load of the task's scheduling
// state reads an old NOTIFIED mark; meanwhile the task consumes that mark, runs, checks
// its signal (not there yet) and suspends; the waker, trusting the old mark, did
// nothing (wake_task_in in runtime/src/core.cpp now decides with a CAS). It showed in
// the mpsc benchmark (about one run in five hung), never in the -O0 build nor under ASan,
// so tests/meson.build builds this program at -O2 in the plain build, against a -O2 copy
// of the library when that build is not optimized itself.
//
// The workload is the mpsc benchmark's: 4 producer tasks send 1,000,000 values each
// through a Channel of capacity 1024 to one consumer task, on 2 workers, 20 rounds of
// ~0.1 s. Each round must finish within 20 s; a round that does not names the tasks
// that never resumed and where they wait (before the fix, 20 rounds hung with
// probability ~99%).
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <spindle/sync.hpp>

#include "../support.hpp"

using namespace spindle;

namespace {

constexpr int kRounds = 20;
constexpr uint64_t kProducers = 4, kEach = 1'000'000;
constexpr auto kRoundLimit = std::chrono::seconds(20);

// One round; returns "" or a description of the tasks that did not finish in time.
std::string one_round(Runtime& rt, uint64_t& sum) {
  return rt.block_on([&] {
    Channel<uint64_t> ch(1024);
    std::vector<Task<>> tasks;
    for (uint64_t p = 0; p < kProducers; ++p)
      tasks.push_back(spawn([&ch] {
        for (uint64_t i = 0; i < kEach; ++i) ch.send(i);
      }));
    tasks.push_back(spawn([&ch, &sum] {
      for (uint64_t i = 0; i < kProducers * kEach; ++i) {
        const auto v = ch.recv();
        if (!v) return;  // closed by the clean-up below
        sum += *v;
      }
    }));
    auto [done, pending] = wait(tasks, {.timeout = kRoundLimit});
    if (pending.empty()) {
      for (auto& t : tasks) t.get();
      return std::string();
    }
    std::string stuck;
    for (auto& t : pending) stuck += t.name() + " waiting at " + to_string(t.where()) + "; ";
    // Clean up: wake them (a cancel does), and let the channel refuse further sends.
    for (auto& t : pending) t.cancel();
    ch.close();
    for (auto& t : tasks) {
      try {
        t.get();
      } catch (const std::exception&) {
        // CancelledError or ChannelClosed: expected while cleaning up
      }
    }
    return stuck;
  });
}

}  // namespace

TEST_CASE("a served waiter always resumes: mpsc over a Channel, 20 rounds on 2 workers", "[runtime][wake][stress]") {
  for (int round = 0; round < kRounds; ++round) {
    test::Checked harness(2);
    Runtime& rt = harness.rt;
    uint64_t sum = 0;
    const std::string stuck = one_round(rt, sum);
    INFO("round " << round << ": tasks never resumed: " << stuck);
    REQUIRE(stuck.empty());
    REQUIRE(sum == kProducers * (kEach * (kEach - 1) / 2));
  }
}
