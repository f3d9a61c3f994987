// spindle's runtime workloads: yield_pingpong, spawn_join, skynet,
// cross_thread_pingpong and idle. Each benchmark call makes a fresh Runtime (start-up and
// shutdown are not timed), runs the workload once inside a task, checks its result and
// reports its figure as a user counter. The peers and floors are in bench_peer_fiber.cpp.
// Peak RSS is process-wide: run each workload alone (scripts/bench.py does).
#include <spindle/spindle.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::Clock;
using bench::Outcome;
using bench::seconds_since;

// (Set field by field: g++ 12 -Wextra warns about designated initialisers that skip members.)
spindle::Options workers(unsigned n) {
  spindle::Options o;
  o.workers = n;
  return o;
}
spindle::TaskOptions pinned_to(int loop) {
  spindle::TaskOptions o;
  o.pinned = true;
  o.loop = loop;
  return o;
}

// --- yield_pingpong: two tasks each yield N/2 times; the spawner gets both ----------------
uint64_t yielder(uint64_t n) {
  uint64_t done = 0;
  for (; done < n; ++done) spindle::yield();
  return done;
}

Outcome yield_pingpong(spindle::Runtime& rt) {
  return rt.block_on([] {
    const auto t0 = Clock::now();
    auto a = spindle::spawn(yielder, bench::kYieldN / 2);
    auto b = spindle::spawn(yielder, bench::kYieldN / 2);
    const uint64_t yields = a.get() + b.get();
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("yields", yields, bench::kYieldN)};
  });
}

// --- spawn_join: spawn 1,000,000 empty tasks keeping the handles, get each in order --------
Outcome spawn_join(spindle::Runtime& rt) {
  return rt.block_on([] {
    std::vector<spindle::Task<>> handles;
    handles.reserve(bench::kSpawnN);
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < bench::kSpawnN; ++i) handles.push_back(spindle::spawn([] {}));
    uint64_t joined = 0;
    for (auto& h : handles) {
      h.get();
      joined += h.done();
    }
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("joined", joined, bench::kSpawnN)};
  });
}

// --- skynet: a 10-ary tree of tasks over 1,000,000 leaves, summed on the way up -----------
uint64_t skynet(uint64_t num, uint64_t size) {
  if (size == 1) return num;
  const uint64_t sub = size / 10;
  spindle::Task<uint64_t> kids[10];
  for (uint64_t i = 0; i < 10; ++i) kids[i] = spindle::spawn(skynet, num + i * sub, sub);
  uint64_t sum = 0;
  for (auto& k : kids) sum += k.get();
  return sum;
}

Outcome skynet_run(spindle::Runtime& rt) {
  return rt.block_on([] {
    const auto t0 = Clock::now();
    const uint64_t sum = skynet(0, bench::kSkynetSize);
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("skynet sum", sum, bench::kSkynetSum)};
  });
}

// --- cross_thread_pingpong: pinger pinned on loop 0, ponger on loop 1 ---------------------
// Channels come later; until then each message travels in a fresh Future, one per message
// and direction. The futures are made before the clock starts (harness, not workload).
Outcome cross_thread_pingpong(spindle::Runtime& rt) {
  std::vector<spindle::Future<uint64_t>> to_pong(bench::kRoundTrips), to_ping(bench::kRoundTrips);
  return rt.block_on([&] {
    const auto t0 = Clock::now();
    auto pinger = spindle::spawn(pinned_to(0), [&] {
      uint64_t v = 0;
      for (uint64_t i = 0; i < bench::kRoundTrips; ++i) {
        to_pong[i].set_result(v);
        v = to_ping[i].get();
      }
      return v;
    });
    auto ponger = spindle::spawn(pinned_to(1), [&] {
      for (uint64_t i = 0; i < bench::kRoundTrips; ++i) to_ping[i].set_result(to_pong[i].get() + 1);
    });
    const uint64_t v = pinger.get();
    ponger.get();
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("final value", v, bench::kRoundTrips)};
  });
}

// --- idle: a runtime with nothing to do, watched for kIdleFor ---------------------------
// One empty task first, so every worker has started and gone idle the way it does after
// work; then the main thread sleeps and the process's CPU time (all threads: the
// workers are the only ones awake) is read before and after.
Outcome idle(spindle::Runtime& rt, double& cpu_percent) {
  rt.block_on([] {});
  const double cpu0 = bench::process_cpu_seconds();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(bench::kIdleFor);
  const double cpu = bench::process_cpu_seconds() - cpu0;
  const double s = seconds_since(t0);
  cpu_percent = 100.0 * cpu / s;
  return Outcome{s, {}};
}

// --- registration: one timed run per call; --benchmark_repetitions gives the medians ------
void yield_pingpong_w1(benchmark::State& st) {
  spindle::Runtime rt(workers(1));
  Outcome out;
  if (bench::timed(st, out, [&] { return yield_pingpong(rt); }))
    st.counters["ns_per_yield"] = out.seconds * 1e9 / bench::kYieldN;
}
void spawn_join_on(benchmark::State& st, unsigned n) {
  spindle::Runtime rt(workers(n));
  Outcome out;
  if (!bench::timed(st, out, [&] { return spawn_join(rt); })) return;
  st.counters["ns_per_task"] = out.seconds * 1e9 / bench::kSpawnN;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
void spawn_join_w1(benchmark::State& st) { spawn_join_on(st, 1); }
void spawn_join_w2(benchmark::State& st) { spawn_join_on(st, 2); }
void skynet_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  const double cpu0 = bench::process_cpu_seconds();
  if (!bench::timed(st, out, [&] { return skynet_run(rt); })) return;
  st.counters["cpu_ms"] = (bench::process_cpu_seconds() - cpu0) * 1e3;
  st.counters["total_ms"] = out.seconds * 1e3;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
// skynet with the execution trace on (the cost of tracing: beside skynet_w2 in the same
// run), written to a file in the temporary directory that is removed afterwards. Its
// size and the events the loops dropped (their rings full while the writer wrote) are
// reported beside the time.
void skynet_w2_traced(benchmark::State& st) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("spindle_bench_trace_" + std::to_string(::getpid()) + ".json"))
          .string();
  Outcome out;
  bool ok;
  {
    spindle::Options o = workers(2);
    o.trace = path;
    spindle::Runtime rt(o);
    const double cpu0 = bench::process_cpu_seconds();
    ok = bench::timed(st, out, [&] { return skynet_run(rt); });
    st.counters["cpu_ms"] = (bench::process_cpu_seconds() - cpu0) * 1e3;  // the writer's included
  }  // the trace is finished by the runtime's shutdown
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path, ec);
  std::string tail;
  if (std::FILE* f = std::fopen(path.c_str(), "r")) {
    std::fseek(f, -256, SEEK_END);
    char buf[257] = {};
    tail.assign(buf, std::fread(buf, 1, 256, f));
    std::fclose(f);
  }
  std::filesystem::remove(path, ec);
  if (!ok) return;
  st.counters["total_ms"] = out.seconds * 1e3;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
  st.counters["trace_mb"] = ec ? 0 : double(bytes) / (1 << 20);
  const auto at = tail.find("\"dropped_events\":");
  st.counters["trace_dropped"] = at == std::string::npos ? -1 : std::atof(tail.c_str() + at + 17);
}
void cross_thread_pingpong_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  if (bench::timed(st, out, [&] { return cross_thread_pingpong(rt); }))
    st.counters["us_per_round_trip"] = out.seconds * 1e6 / bench::kRoundTrips;
}

void idle_on(benchmark::State& st, unsigned n) {
  spindle::Runtime rt(workers(n));
  Outcome out;
  double cpu_percent = 0;
  if (bench::timed(st, out, [&] { return idle(rt, cpu_percent); })) st.counters["cpu_percent"] = cpu_percent;
}
void idle_w2(benchmark::State& st) { idle_on(st, 2); }
void idle_w4(benchmark::State& st) { idle_on(st, 4); }
void idle_w8(benchmark::State& st) { idle_on(st, 8); }

#define WORKLOAD(fn) BENCHMARK(fn)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond)
WORKLOAD(yield_pingpong_w1);
WORKLOAD(spawn_join_w1);
WORKLOAD(spawn_join_w2);
WORKLOAD(skynet_w2);
WORKLOAD(skynet_w2_traced);
WORKLOAD(cross_thread_pingpong_w2);
WORKLOAD(idle_w2);
WORKLOAD(idle_w4);
WORKLOAD(idle_w8);

}  // namespace

BENCHMARK_MAIN();
