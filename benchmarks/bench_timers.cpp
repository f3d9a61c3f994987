// spindle's timer workloads, each on 2 workers:
//  - timers_w2: 100,000 tasks, task i sleeps d_i ms (the LCG below), all at
//    once; total ms (the floor is 100), CPU ms and page faults over the run, peak RSS.
//  - timer_cancel_w2: 1,000,000 call_later timers inserted (deadlines 1-100 s, from the
//    same LCG, so none fires), then each cancelled through its TimerHandle; ns per timer
//    (insert + cancel) and peak RSS.
//  - wait_for_w2: 200,000 times, spawn a task that returns at once and wait for it with
//    wait_for(t, 1 s); beside it the same with a plain get(): ns per operation of each,
//    and the difference (wait_for's overhead).
// The peer (Boost.Fiber) is in peer_fiber_timers.cpp. Peak RSS is process-wide: run each
// workload alone (--benchmark_filter), as scripts/bench.py does.
#include <spindle/spindle.hpp>
#include <spindle/waiting.hpp>

#include <atomic>
#include <chrono>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::Clock;
using bench::Outcome;
using bench::seconds_since;

constexpr uint64_t kSleepers = 100'000;  // timers: tasks
constexpr uint64_t kTimers = 1'000'000;  // timer_cancel: timers
constexpr uint64_t kWaitFors = 200'000;  // wait_for: operations of each kind

spindle::Options workers(unsigned n) {
  spindle::Options o;
  o.workers = n;
  return o;
}

// The workload's LCG: x = 42, then x = x * 6364136223846793005 + 1442695040888963407
// (mod 2^64) per task, d = 1 + (x >> 33) mod 100.
std::vector<uint32_t> lcg_delays(uint64_t n) {
  std::vector<uint32_t> d(n);
  uint64_t x = 42;
  for (uint64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    d[i] = uint32_t(1 + (x >> 33) % 100);
  }
  return d;
}

// --- timers: 100,000 sleepers at once --------------------------------------------------------
Outcome timers(spindle::Runtime& rt) {
  const std::vector<uint32_t> delay = lcg_delays(kSleepers);
  uint64_t want = 0;
  for (uint32_t d : delay) want += d;
  return rt.block_on([&] {
    std::vector<spindle::Task<uint32_t>> hs;
    hs.reserve(kSleepers);
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < kSleepers; ++i)
      hs.push_back(spindle::spawn([d = delay[i]] {
        spindle::sleep(std::chrono::milliseconds(d));
        return d;
      }));
    uint64_t slept = 0;
    for (auto& h : hs) slept += h.get();
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("sum of delays", slept, want)};
  });
}

// --- timer_cancel: 1,000,000 timers inserted, then cancelled ----------------------------------
std::atomic<uint64_t> g_fired{0};

Outcome timer_cancel(spindle::Runtime& rt) {
  const std::vector<uint32_t> delay = lcg_delays(kTimers);
  g_fired = 0;
  return rt.block_on([&] {
    std::vector<spindle::TimerHandle> hs;
    hs.reserve(kTimers);
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < kTimers; ++i)
      hs.push_back(spindle::call_later(std::chrono::seconds(delay[i]), [] {
        // relaxed: a counter read after the run; it must stay 0.
        g_fired.fetch_add(1, std::memory_order_relaxed);
      }));
    uint64_t cancelled = 0;
    for (auto& h : hs) cancelled += h.cancel();
    const double s = seconds_since(t0);
    std::string err = bench::expect("cancelled", cancelled, kTimers);
    if (err.empty()) err = bench::expect("fired", g_fired.load(std::memory_order_relaxed), 0);
    return Outcome{s, err};
  });
}

// --- wait_for: overhead on a task that finishes at once ---------------------------------------
struct WaitForOutcome {
  Outcome wait_for;
  double get_seconds = 0;
};

WaitForOutcome wait_for_run(spindle::Runtime& rt) {
  return rt.block_on([] {
    WaitForOutcome r;
    uint64_t sum = 0;
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < kWaitFors; ++i) sum += spindle::spawn([] { return uint64_t(1); }).get();
    r.get_seconds = seconds_since(t0);
    t0 = Clock::now();
    for (uint64_t i = 0; i < kWaitFors; ++i)
      sum += spindle::wait_for(spindle::spawn([] { return uint64_t(1); }), std::chrono::seconds(1));
    r.wait_for = Outcome{seconds_since(t0), bench::expect("sum", sum, 2 * kWaitFors)};
    return r;
  });
}

// --- registration: one timed run per call; --benchmark_repetitions gives the medians ---------
void timers_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  const double cpu0 = bench::process_cpu_seconds();
  const long faults0 = bench::process_minor_faults();
  if (!bench::timed(st, out, [&] { return timers(rt); })) return;
  // CPU (all threads) and page faults over the run: steadier than the wall time on a
  // shared machine, and the faults count the stack pages first touched.
  st.counters["cpu_ms"] = (bench::process_cpu_seconds() - cpu0) * 1e3;
  st.counters["page_faults"] = double(bench::process_minor_faults() - faults0);
  st.counters["total_ms"] = out.seconds * 1e3;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
void timer_cancel_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  if (!bench::timed(st, out, [&] { return timer_cancel(rt); })) return;
  st.counters["ns_per_timer"] = out.seconds * 1e9 / kTimers;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
void wait_for_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  WaitForOutcome last;
  Outcome out;
  if (!bench::timed(st, out, [&] {
        last = wait_for_run(rt);
        return last.wait_for;
      }))
    return;
  const double wf = out.seconds * 1e9 / kWaitFors, get = last.get_seconds * 1e9 / kWaitFors;
  st.counters["ns_per_wait_for"] = wf;
  st.counters["ns_per_get"] = get;
  st.counters["overhead_ns"] = wf - get;
}

#define WORKLOAD(fn) BENCHMARK(fn)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond)
WORKLOAD(timers_w2);
WORKLOAD(timer_cancel_w2);
WORKLOAD(wait_for_w2);

}  // namespace

BENCHMARK_MAIN();
