// The peer for spindle's synchronisation workloads (bench_sync.cpp), without spindle:
// Boost.Fiber 1.74 with the work_stealing algorithm on 2 threads (its default, spinning,
// idle mode), using buffered_channel, fibers::mutex and, for the Event, the pattern a
// Boost.Fiber user writes (a flag under a fibers::mutex with a condition_variable).
//
//   mpsc_w2            4 producers x 1,000,000 u64 into one buffered_channel, one consumer
//                      sums them; must equal 4 x 499999500000. Figure: million msgs/s.
//                      (buffered_channel's capacity must be a power of two and it keeps one
//                      slot free: capacity 1024 holds 1023 values.)
//   lock_uncontended   one fibre locks and unlocks a mutex 10,000,000 times: ns per pair.
//   lock_contended_w2  4 fibres on 2 threads each lock, increment a plain counter and
//                      unlock 1,000,000 times; the counter must be 4,000,000. Figure: ns
//                      per lock/unlock pair (wall time / 4,000,000).
//   event_latency_w2   a fibre on thread 0 and one on thread 1 wake each other through two
//                      events 100,000 round trips. Figure: us per wake-up (round trip / 2).
//   idle_memory_w2     VmRSS before; 100,000 fibres (default stacks) each bump a counter
//                      and wait on one shared event; 20 ms after all have started, VmRSS
//                      again; set the event, join all. Figure: bytes per idle fibre.
//
// Boost.Fiber's work_stealing can be set up only once per process; every workload here
// uses the same 2 threads, so they share one pool.
#include <boost/fiber/all.hpp>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

namespace fibers = boost::fibers;
using bench::Clock;
using bench::Outcome;
using bench::seconds_since;

constexpr unsigned kThreads = 2;
constexpr uint64_t kProducers = 4;
constexpr uint64_t kPerProducer = 1'000'000;
constexpr uint64_t kMpscSum = kProducers * 499'999'500'000ull;
constexpr uint64_t kUncontended = 10'000'000;
constexpr uint64_t kContendedTasks = 4;
constexpr uint64_t kContendedEach = 1'000'000;
constexpr uint64_t kRoundTrips = 100'000;
constexpr uint64_t kIdleTasks = 100'000;

// Two scheduler threads: the benchmark thread (thread 0) and one helper (thread 1). The
// helper's main fibre — which Boost never migrates — runs the jobs posted to it, so a
// job posted there stays on thread 1 (our way to pin a fibre for event_latency).
class TwoThreads {
 public:
  TwoThreads() {
    helper_ = std::thread([this] { helper_main(); });
    fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(kThreads);
  }
  ~TwoThreads() {
    {
      std::unique_lock lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    helper_.join();
  }
  /// Runs fn on thread 1's main fibre; the future is ready when it returns.
  fibers::future<void> on_thread1(std::function<void()> fn) {
    fibers::packaged_task<void()> job(std::move(fn));
    auto f = job.get_future();
    {
      std::unique_lock lk(mu_);
      job_ = std::move(job);
    }
    cv_.notify_all();
    return f;
  }

 private:
  void helper_main() {
    fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(kThreads);
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || job_.valid(); });  // a fibre wait: the thread keeps scheduling
      if (!job_.valid()) return;
      auto job = std::move(job_);
      lk.unlock();
      job();
      lk.lock();
    }
  }

  fibers::mutex mu_;
  fibers::condition_variable cv_;
  fibers::packaged_task<void()> job_;
  bool stop_ = false;
  std::thread helper_;
};

std::unique_ptr<TwoThreads> g_threads;
TwoThreads& threads() {
  if (!g_threads) g_threads = std::make_unique<TwoThreads>();
  return *g_threads;
}

// --- mpsc ---------------------------------------------------------------------------------
Outcome fiber_mpsc() {
  fibers::buffered_channel<uint64_t> ch(1024);
  const auto t0 = Clock::now();
  std::vector<fibers::fiber> producers;
  for (uint64_t p = 0; p < kProducers; ++p)
    producers.emplace_back(fibers::launch::post, [&ch] {
      for (uint64_t i = 0; i < kPerProducer; ++i) ch.push(i);
    });
  uint64_t sum = 0;
  fibers::fiber consumer(fibers::launch::post, [&] {
    uint64_t v = 0;
    for (uint64_t i = 0; i < kProducers * kPerProducer; ++i) {
      ch.pop(v);
      sum += v;
    }
  });
  for (auto& f : producers) f.join();
  consumer.join();
  const double s = seconds_since(t0);
  return {s, bench::expect("mpsc sum", sum, kMpscSum)};
}

// --- locks --------------------------------------------------------------------------------
Outcome fiber_lock_uncontended() {
  fibers::mutex m;
  uint64_t counter = 0;
  const auto t0 = Clock::now();
  fibers::fiber f(fibers::launch::post, [&] {
    for (uint64_t i = 0; i < kUncontended; ++i) {
      m.lock();
      ++counter;
      m.unlock();
    }
  });
  f.join();
  const double s = seconds_since(t0);
  return {s, bench::expect("counter", counter, kUncontended)};
}

Outcome fiber_lock_contended() {
  fibers::mutex m;
  uint64_t counter = 0;  // plain: the mutex is what protects it
  const auto t0 = Clock::now();
  std::vector<fibers::fiber> fs;
  for (uint64_t k = 0; k < kContendedTasks; ++k)
    fs.emplace_back(fibers::launch::post, [&] {
      for (uint64_t i = 0; i < kContendedEach; ++i) {
        m.lock();
        ++counter;
        m.unlock();
      }
    });
  for (auto& f : fs) f.join();
  const double s = seconds_since(t0);
  return {s, bench::expect("counter", counter, kContendedTasks * kContendedEach)};
}

// --- event latency ------------------------------------------------------------------------
// What a Boost.Fiber user writes for asyncio.Event: a flag, a mutex and a condition variable.
class FiberEvent {
 public:
  void set() {
    {
      std::unique_lock lk(m_);
      flag_ = true;
    }
    cv_.notify_all();
  }
  void clear() {
    std::unique_lock lk(m_);
    flag_ = false;
  }
  void wait() {
    std::unique_lock lk(m_);
    cv_.wait(lk, [&] { return flag_; });
  }

 private:
  fibers::mutex m_;
  fibers::condition_variable cv_;
  bool flag_ = false;
};

Outcome fiber_event_latency(TwoThreads& tt) {
  FiberEvent ping, pong;
  uint64_t answered = 0;
  const auto t0 = Clock::now();
  auto ponger = tt.on_thread1([&] {
    for (uint64_t i = 0; i < kRoundTrips; ++i) {
      ping.wait();
      ping.clear();
      ++answered;
      pong.set();
    }
  });
  for (uint64_t i = 0; i < kRoundTrips; ++i) {  // the benchmark thread's main fibre: thread 0
    ping.set();
    pong.wait();
    pong.clear();
  }
  ponger.get();
  const double s = seconds_since(t0);
  return {s, bench::expect("round trips", answered, kRoundTrips)};
}

// --- idle memory --------------------------------------------------------------------------
Outcome fiber_idle_memory(double& bytes_per_task) {
  std::atomic<uint64_t> started{0}, finished{0};
  FiberEvent go;
  std::vector<fibers::fiber> fs;
  fs.reserve(kIdleTasks);
  const double before = bench::proc_status_mb("VmRSS");
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < kIdleTasks; ++i)
    fs.emplace_back(fibers::launch::post, [&] {
      // relaxed: counters only; the joins below order the final reads.
      started.fetch_add(1, std::memory_order_relaxed);
      go.wait();
      finished.fetch_add(1, std::memory_order_relaxed);
    });
  while (started.load(std::memory_order_relaxed) < kIdleTasks)
    boost::this_fiber::sleep_for(std::chrono::milliseconds(1));
  boost::this_fiber::sleep_for(std::chrono::milliseconds(20));
  const double after = bench::proc_status_mb("VmRSS");
  go.set();
  for (auto& f : fs) f.join();
  const double s = seconds_since(t0);
  bytes_per_task = (after - before) * 1024.0 * 1024.0 / kIdleTasks;
  return {s, bench::expect("finished", finished.load(), kIdleTasks)};
}

// --- registration -------------------------------------------------------------------------
void mpsc_w2(benchmark::State& st) {
  threads();
  Outcome out;
  if (bench::timed(st, out, fiber_mpsc)) st.counters["M_msgs_per_s"] = kProducers * kPerProducer / out.seconds / 1e6;
}
void lock_uncontended_w2(benchmark::State& st) {
  threads();
  Outcome out;
  if (bench::timed(st, out, fiber_lock_uncontended))
    st.counters["ns_per_lock_unlock"] = out.seconds * 1e9 / kUncontended;
}
void lock_contended_w2(benchmark::State& st) {
  threads();
  Outcome out;
  if (bench::timed(st, out, fiber_lock_contended))
    st.counters["ns_per_lock_unlock"] = out.seconds * 1e9 / (kContendedTasks * kContendedEach);
}
void event_latency_w2(benchmark::State& st) {
  TwoThreads& tt = threads();
  Outcome out;
  if (bench::timed(st, out, [&] { return fiber_event_latency(tt); }))
    st.counters["us_per_wakeup"] = out.seconds * 1e6 / (2 * kRoundTrips);
}
void idle_memory_w2(benchmark::State& st) {
  threads();
  Outcome out;
  double per_task = 0;
  if (bench::timed(st, out, [&] { return fiber_idle_memory(per_task); })) st.counters["bytes_per_task"] = per_task;
}

#define WORKLOAD(fn) BENCHMARK(fn)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond)
WORKLOAD(mpsc_w2);
WORKLOAD(lock_uncontended_w2);
WORKLOAD(lock_contended_w2);
WORKLOAD(event_latency_w2);
WORKLOAD(idle_memory_w2);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_threads.reset();  // stop and join the helper thread
  return 0;
}
