// spindle's executor workloads, on a runtime of 2 workers:
//  - to_thread_latency: one task calls to_thread(fn, i) kCalls times in a row, where fn
//    returns i + 1 at once; ns per call (the round trip: a fibre hands a job to the
//    blocking pool and is woken with the result).
//  - to_thread_throughput: kCallers tasks each make kCalls / kCallers such calls at once;
//    calls per second.
//  - process_call_empty: one task calls a registered function that returns its int
//    argument, kProcCalls times in a row on a ProcessPool of 1 worker; us per call.
//  - process_call_1mib: the same with a 1 MiB std::vector<uint8_t> argument (the
//    function returns its size), kBigCalls times; us per call.
// The blocking pool is bounded to kPoolThreads threads, as the peers' pools are. The
// peers (std::async, boost::asio::thread_pool, a raw socketpair round trip to a forked
// child) are in peer_executors.cpp. Run each workload alone (scripts/bench.py does).
#include <spindle/spindle.hpp>

#include <cstdint>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::Clock;
using bench::Outcome;
using bench::seconds_since;

// The same sizes as peer_executors.cpp.
constexpr uint64_t kCalls = 50'000;      // to_thread_*: calls in all
constexpr uint64_t kCallers = 16;        // to_thread_throughput: concurrent callers
constexpr unsigned kPoolThreads = 4;     // blocking pool threads (the peers' pool size)
constexpr uint64_t kProcCalls = 10'000;  // process_call_empty
constexpr uint64_t kBigCalls = 1'000;    // process_call_1mib
constexpr std::size_t kBig = std::size_t(1) << 20;

spindle::Options options() {
  spindle::Options o;
  o.workers = 2;
  o.blocking_threads = kPoolThreads;
  return o;
}

uint64_t plus_one(uint64_t i) { return i + 1; }

// The sum of plus_one(i) over i in [0, n).
constexpr uint64_t want_sum(uint64_t n) { return n * (n + 1) / 2; }

// --- to_thread_latency: sequential round trips from one fibre -----------------------------
Outcome to_thread_latency(spindle::Runtime& rt) {
  return rt.block_on([] {
    spindle::to_thread(plus_one, uint64_t(0));  // the pool's first thread starts here
    uint64_t sum = 0;
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < kCalls; ++i) sum += spindle::to_thread(plus_one, i);
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("sum", sum, want_sum(kCalls))};
  });
}

// --- to_thread_throughput: kCallers tasks calling at once ---------------------------------
Outcome to_thread_throughput(spindle::Runtime& rt) {
  return rt.block_on([] {
    std::vector<spindle::Task<uint64_t>> callers;
    callers.reserve(kCallers);
    const uint64_t per = kCalls / kCallers;
    const auto t0 = Clock::now();
    for (uint64_t c = 0; c < kCallers; ++c)
      callers.push_back(spindle::spawn([c, per] {
        uint64_t sum = 0;
        for (uint64_t i = c * per; i < (c + 1) * per; ++i) sum += spindle::to_thread(plus_one, i);
        return sum;
      }));
    uint64_t sum = 0;
    for (auto& t : callers) sum += t.get();
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("sum", sum, want_sum(per * kCallers))};
  });
}

// --- process pool calls --------------------------------------------------------------------
int echo_int_impl(int v) { return v; }
uint64_t byte_count_impl(std::vector<uint8_t> v) { return v.size() + v[v.size() / 2]; }
const auto echo_int = spindle::process_function("echo_int", &echo_int_impl);
const auto byte_count = spindle::process_function("byte_count", &byte_count_impl);

Outcome process_call_empty(spindle::Runtime& rt, spindle::ProcessPool& pool) {
  return rt.block_on([&] {
    (void)pool.call(echo_int, 0);  // starts the worker process
    uint64_t sum = 0;
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < kProcCalls; ++i) sum += uint64_t(pool.call(echo_int, int(i)));
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("sum", sum, kProcCalls * (kProcCalls - 1) / 2)};
  });
}

Outcome process_call_1mib(spindle::Runtime& rt, spindle::ProcessPool& pool) {
  return rt.block_on([&] {
    std::vector<uint8_t> big(kBig, 1);
    (void)pool.call(byte_count, big);  // starts the worker process
    uint64_t sum = 0;
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < kBigCalls; ++i) sum += pool.call(byte_count, big);
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("bytes", sum, kBigCalls * (kBig + 1))};
  });
}

// --- registration: one timed run per call; --benchmark_repetitions gives the medians -------
void to_thread_latency(benchmark::State& st) {
  spindle::Runtime rt(options());
  Outcome out;
  if (!bench::timed(st, out, [&] { return to_thread_latency(rt); })) return;
  st.counters["ns_per_call"] = out.seconds * 1e9 / kCalls;
}
void to_thread_throughput(benchmark::State& st) {
  spindle::Runtime rt(options());
  Outcome out;
  if (!bench::timed(st, out, [&] { return to_thread_throughput(rt); })) return;
  st.counters["calls_per_s"] = double(kCalls / kCallers * kCallers) / out.seconds;
}
void process_call_empty(benchmark::State& st) {
  spindle::Runtime rt(options());
  spindle::ProcessPool pool({.workers = 1});
  Outcome out;
  if (!bench::timed(st, out, [&] { return process_call_empty(rt, pool); })) return;
  st.counters["us_per_call"] = out.seconds * 1e6 / kProcCalls;
}
void process_call_1mib(benchmark::State& st) {
  spindle::Runtime rt(options());
  spindle::ProcessPool pool({.workers = 1});
  Outcome out;
  if (!bench::timed(st, out, [&] { return process_call_1mib(rt, pool); })) return;
  st.counters["us_per_call"] = out.seconds * 1e6 / kBigCalls;
}

#define WORKLOAD(fn) BENCHMARK(fn)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond)
WORKLOAD(to_thread_latency);
WORKLOAD(to_thread_throughput);
WORKLOAD(process_call_empty);
WORKLOAD(process_call_1mib);

}  // namespace

int main(int argc, char** argv) {
  spindle::serve_process_worker();  // in a ProcessPool worker: serves calls, never returns
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
