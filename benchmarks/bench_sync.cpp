// spindle's synchronisation workloads; the Boost.Fiber peer is peer_fiber_sync.cpp (run
// both in the same session and compare the figures of that run only).
//
//   mpsc_w2            one Channel<uint64_t> of capacity 1024; 4 producer
//                      tasks each send 0..999,999; one consumer task sums all 4,000,000;
//                      the sum must be 4 x 499999500000. Figure: million msgs/s.
//   lock_uncontended   one task locks and unlocks a Lock 10,000,000 times: ns per pair.
//   lock_contended_w2  4 tasks on 2 workers each lock, increment a plain counter and
//                      unlock 1,000,000 times; the counter must be 4,000,000. Figure: ns
//                      per lock/unlock pair (wall time / 4,000,000).
//   event_latency_w2   a task pinned on loop 0 and one pinned on loop 1 wake each other
//                      through two Events, 100,000 round trips. Figure: us per wake-up
//                      (round trip / 2).
//   idle_memory_w2     VmRSS before; 100,000 tasks each bump a counter and
//                      wait on one shared Event; once all have started, 20 ms later, VmRSS
//                      again; set the Event, join all, check all 100,000 finished. Figure:
//                      (VmRSS after - before) / 100,000, bytes per idle task.
//
// Each benchmark call makes a fresh Runtime (start-up and shutdown are not timed) and
// runs the workload once inside a task.
#include <spindle/spindle.hpp>
#include <spindle/sync.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::Clock;
using bench::Outcome;
using bench::seconds_since;

constexpr uint64_t kProducers = 4;
constexpr uint64_t kPerProducer = 1'000'000;
constexpr uint64_t kMpscSum = kProducers * 499'999'500'000ull;
constexpr uint64_t kUncontended = 10'000'000;
constexpr uint64_t kContendedTasks = 4;
constexpr uint64_t kContendedEach = 1'000'000;
constexpr uint64_t kRoundTrips = 100'000;
constexpr uint64_t kIdleTasks = 100'000;

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

// --- mpsc ---------------------------------------------------------------------------------
Outcome mpsc(spindle::Runtime& rt) {
  return rt.block_on([] {
    spindle::Channel<uint64_t> ch(1024);
    const auto t0 = Clock::now();
    std::vector<spindle::Task<>> producers;
    for (uint64_t p = 0; p < kProducers; ++p)
      producers.push_back(spindle::spawn([&ch] {
        for (uint64_t i = 0; i < kPerProducer; ++i) ch.send(i);
      }));
    auto consumer = spindle::spawn([&ch] {
      uint64_t sum = 0;
      for (uint64_t i = 0; i < kProducers * kPerProducer; ++i) sum += *ch.recv();
      return sum;
    });
    for (auto& p : producers) p.get();
    const uint64_t sum = consumer.get();
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("mpsc sum", sum, kMpscSum)};
  });
}

// --- locks --------------------------------------------------------------------------------
Outcome lock_uncontended(spindle::Runtime& rt) {
  return rt.block_on([] {
    spindle::Lock l;
    uint64_t counter = 0;
    const auto t0 = Clock::now();
    auto t = spindle::spawn([&] {
      for (uint64_t i = 0; i < kUncontended; ++i) {
        l.lock();
        ++counter;
        l.unlock();
      }
    });
    t.get();
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("counter", counter, kUncontended)};
  });
}

Outcome lock_contended(spindle::Runtime& rt) {
  return rt.block_on([] {
    spindle::Lock l;
    uint64_t counter = 0;  // plain: the lock is what protects it
    const auto t0 = Clock::now();
    std::vector<spindle::Task<>> ts;
    for (uint64_t k = 0; k < kContendedTasks; ++k)
      ts.push_back(spindle::spawn([&] {
        for (uint64_t i = 0; i < kContendedEach; ++i) {
          l.lock();
          ++counter;
          l.unlock();
        }
      }));
    for (auto& t : ts) t.get();
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("counter", counter, kContendedTasks * kContendedEach)};
  });
}

// --- event latency ------------------------------------------------------------------------
Outcome event_latency(spindle::Runtime& rt) {
  return rt.block_on([] {
    spindle::Event ping, pong;
    const auto t0 = Clock::now();
    auto pinger = spindle::spawn(pinned_to(0), [&] {
      for (uint64_t i = 0; i < kRoundTrips; ++i) {
        ping.set();
        pong.wait();
        pong.clear();
      }
    });
    auto ponger = spindle::spawn(pinned_to(1), [&] {
      uint64_t answered = 0;
      for (uint64_t i = 0; i < kRoundTrips; ++i) {
        ping.wait();
        ping.clear();
        ++answered;
        pong.set();
      }
      return answered;
    });
    pinger.get();
    const uint64_t answered = ponger.get();
    const double s = seconds_since(t0);
    return Outcome{s, bench::expect("round trips", answered, kRoundTrips)};
  });
}

// --- idle memory --------------------------------------------------------------------------
Outcome idle_memory(spindle::Runtime& rt, double& bytes_per_task) {
  return rt.block_on([&] {
    std::atomic<uint64_t> started{0}, finished{0};
    spindle::Event go;
    std::vector<spindle::Task<>> ts;
    ts.reserve(kIdleTasks);
    const double before = bench::proc_status_mb("VmRSS");
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < kIdleTasks; ++i)
      ts.push_back(spindle::spawn([&] {
        // relaxed: counters only; the joins below order the final reads.
        started.fetch_add(1, std::memory_order_relaxed);
        go.wait();
        finished.fetch_add(1, std::memory_order_relaxed);
      }));
    while (started.load(std::memory_order_relaxed) < kIdleTasks) spindle::sleep(std::chrono::milliseconds(1));
    spindle::sleep(std::chrono::milliseconds(20));
    const double after = bench::proc_status_mb("VmRSS");
    go.set();
    for (auto& t : ts) t.get();
    const double s = seconds_since(t0);
    bytes_per_task = (after - before) * 1024.0 * 1024.0 / kIdleTasks;
    return Outcome{s, bench::expect("finished", finished.load(), kIdleTasks)};
  });
}

// --- registration -------------------------------------------------------------------------
void mpsc_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  if (bench::timed(st, out, [&] { return mpsc(rt); }))
    st.counters["M_msgs_per_s"] = kProducers * kPerProducer / out.seconds / 1e6;
}
void lock_uncontended_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  if (bench::timed(st, out, [&] { return lock_uncontended(rt); }))
    st.counters["ns_per_lock_unlock"] = out.seconds * 1e9 / kUncontended;
}
void lock_contended_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  if (bench::timed(st, out, [&] { return lock_contended(rt); }))
    st.counters["ns_per_lock_unlock"] = out.seconds * 1e9 / (kContendedTasks * kContendedEach);
}
void event_latency_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  if (bench::timed(st, out, [&] { return event_latency(rt); }))
    st.counters["us_per_wakeup"] = out.seconds * 1e6 / (2 * kRoundTrips);
}
void idle_memory_w2(benchmark::State& st) {
  spindle::Runtime rt(workers(2));
  Outcome out;
  double per_task = 0;
  if (bench::timed(st, out, [&] { return idle_memory(rt, per_task); })) st.counters["bytes_per_task"] = per_task;
}

#define WORKLOAD(fn) BENCHMARK(fn)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond)
WORKLOAD(mpsc_w2);
WORKLOAD(lock_uncontended_w2);
WORKLOAD(lock_contended_w2);
WORKLOAD(event_latency_w2);
WORKLOAD(idle_memory_w2);

}  // namespace

BENCHMARK_MAIN();
