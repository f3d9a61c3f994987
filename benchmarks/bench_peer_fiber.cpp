// The peer and the floors for spindle's workloads, without spindle:
//  - Boost.Fiber 1.74 with the work_stealing algorithm (its default, spinning, idle mode):
//    yield_pingpong, spawn_join, skynet, cross_thread_pingpong;
//  - floors: a raw Boost.Context switch (yield_pingpong) and two plain threads bouncing
//    a value through mutex + condition_variable mailboxes (cross_thread_pingpong).
// Boost.Fiber's work_stealing can be set up only once per process (its thread count and
// barrier are static), so each workload is meant to run alone in its own process
// (scripts/bench.py does that); a workload wanting another thread count than the pool
// already made is skipped with an error.
#include <boost/context/fiber.hpp>
#include <boost/fiber/all.hpp>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::Clock;
using bench::Outcome;
using bench::seconds_since;
namespace fibers = boost::fibers;

// Boost.Fiber work_stealing on n threads: the calling (benchmark) thread is scheduler 0;
// helper k runs jobs handed to it by run_on(k, ...) in its own main fibre, which Boost
// never migrates — that is how a Boost.Fiber task is pinned to a thread.
class FiberPool {
 public:
  // suspend: Boost's work_stealing(n, suspend) — idle threads sleep on a condition
  // variable instead of spinning (false, the default, spins).
  explicit FiberPool(unsigned n, bool suspend = false) : n_(n), suspend_(suspend) {
    for (unsigned k = 1; k < n; ++k) slots_.push_back(std::make_unique<Slot>());
    for (unsigned k = 1; k < n; ++k) helpers_.emplace_back([this, k] { helper(*slots_[k - 1]); });
    fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(n, suspend);  // waits for all n
  }
  ~FiberPool() {
    for (auto& s : slots_) {
      std::unique_lock lk(s->m);
      s->stop = true;
      s->cv.notify_one();
    }
    for (auto& t : helpers_) t.join();
  }
  unsigned threads() const { return n_; }

  /// Runs fn on helper thread k (1 <= k < threads()); the future is ready when it ends.
  template <class Fn>
  fibers::future<void> run_on(unsigned k, Fn fn) {
    Slot& s = *slots_.at(k - 1);
    std::unique_lock lk(s.m);
    s.job = fibers::packaged_task<void()>(std::move(fn));
    auto done = s.job.get_future();
    s.cv.notify_one();
    return done;
  }

 private:
  struct Slot {
    fibers::mutex m;
    fibers::condition_variable cv;
    fibers::packaged_task<void()> job;
    bool stop = false;
  };
  void helper(Slot& s) {
    fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(n_, suspend_);
    std::unique_lock lk(s.m);
    for (;;) {
      // A fibre wait: meanwhile this thread's scheduler runs (and steals) other fibres.
      s.cv.wait(lk, [&] { return s.stop || s.job.valid(); });
      if (s.job.valid()) {
        auto job = std::move(s.job);
        lk.unlock();
        job();
        lk.lock();
      } else {
        return;
      }
    }
  }

  unsigned n_;
  bool suspend_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::thread> helpers_;
};

std::unique_ptr<FiberPool> g_pool;

FiberPool* pool_for(benchmark::State& st, unsigned threads, bool suspend = false) {
  if (!g_pool) g_pool = std::make_unique<FiberPool>(threads, suspend);
  if (g_pool->threads() == threads) return g_pool.get();
  st.SkipWithError(
      "Boost.Fiber work_stealing is already set up with another thread count "
      "in this process: run each workload alone (--benchmark_filter)");
  return nullptr;
}

// --- yield_pingpong: two fibres each yield N/2 times on one thread ---------------------
Outcome fiber_yield_pingpong() {
  uint64_t yields[2] = {0, 0};
  const auto t0 = Clock::now();
  fibers::fiber a(fibers::launch::post, [&] {
    for (uint64_t i = 0; i < bench::kYieldN / 2; ++i, ++yields[0]) boost::this_fiber::yield();
  });
  fibers::fiber b(fibers::launch::post, [&] {
    for (uint64_t i = 0; i < bench::kYieldN / 2; ++i, ++yields[1]) boost::this_fiber::yield();
  });
  a.join();
  b.join();
  const double s = seconds_since(t0);
  return {s, bench::expect("yields", yields[0] + yields[1], bench::kYieldN)};
}

// Floor: two raw Boost.Context fibres, A and B, resume each other N times in all.
Outcome context_switch_floor() {
  namespace ctx = boost::context;
  uint64_t switches = 0;
  bool stop = false;
  double s = 0;
  ctx::fiber a([&](ctx::fiber&& main) {
    ctx::fiber b([&](ctx::fiber&& to_a) {
      while (!stop) {
        ++switches;
        to_a = std::move(to_a).resume();  // B -> A
      }
      return std::move(to_a);  // B ends, back to A
    });
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < bench::kYieldN / 2; ++i) {
      ++switches;
      b = std::move(b).resume();  // A -> B
    }
    s = seconds_since(t0);
    stop = true;
    b = std::move(b).resume();  // let B run to its end (never destroy a suspended fibre)
    return std::move(main);
  });
  a = std::move(a).resume();
  return {s, bench::expect("switches", switches, bench::kYieldN)};
}

// --- spawn_join: spawn 1,000,000 empty fibres (launch::post), then join each in order -----
Outcome fiber_spawn_join() {
  std::vector<fibers::fiber> fs;
  fs.reserve(bench::kSpawnN);
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < bench::kSpawnN; ++i) fs.emplace_back(fibers::launch::post, [] {});
  uint64_t joined = 0;
  for (auto& f : fs) {
    f.join();
    joined += !f.joinable();
  }
  const double s = seconds_since(t0);
  return {s, bench::expect("joined", joined, bench::kSpawnN)};
}

// --- skynet: 10-ary tree of 1,000,000 leaves, children started with launch::dispatch -----
uint64_t fiber_skynet(uint64_t num, uint64_t size) {
  if (size == 1) return num;
  const uint64_t sub = size / 10;
  uint64_t part[10];
  fibers::fiber kids[10];
  for (uint64_t i = 0; i < 10; ++i)
    kids[i] =
        fibers::fiber(fibers::launch::dispatch, [&part, i, num, sub] { part[i] = fiber_skynet(num + i * sub, sub); });
  uint64_t sum = 0;
  for (uint64_t i = 0; i < 10; ++i) {
    kids[i].join();
    sum += part[i];
  }
  return sum;
}

Outcome fiber_skynet_run() {
  const auto t0 = Clock::now();
  const uint64_t sum = fiber_skynet(0, bench::kSkynetSize);
  const double s = seconds_since(t0);
  return {s, bench::expect("skynet sum", sum, bench::kSkynetSum)};
}

// --- cross_thread_pingpong: pinger on thread 0, ponger on thread 1, capacity-1 channels ----
Outcome fiber_cross_thread(FiberPool& pool) {
  // buffered_channel keeps one slot free, so capacity 2 holds exactly one value.
  fibers::buffered_channel<uint64_t> ping(2), pong(2);
  const auto t0 = Clock::now();
  auto ponger = pool.run_on(1, [&] {
    uint64_t v = 0;
    for (uint64_t i = 0; i < bench::kRoundTrips; ++i) {
      ping.pop(v);
      pong.push(v + 1);
    }
  });
  uint64_t v = 0;
  for (uint64_t i = 0; i < bench::kRoundTrips; ++i) {
    ping.push(v);
    pong.pop(v);
  }
  ponger.get();
  const double s = seconds_since(t0);
  return {s, bench::expect("final value", v, bench::kRoundTrips)};
}

// Floor: the same bounce between two plain threads, each direction a mutex + cv mailbox.
struct Mailbox {
  std::mutex m;
  std::condition_variable cv;
  bool full = false;
  uint64_t value = 0;
  void put(uint64_t v) {
    {
      std::lock_guard lk(m);
      value = v;
      full = true;
    }
    cv.notify_one();
  }
  uint64_t take() {
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return full; });
    full = false;
    return value;
  }
};

Outcome thread_cv_pingpong() {
  Mailbox to_pong, to_ping;
  uint64_t v = 0;
  const auto t0 = Clock::now();
  std::thread pinger([&] {
    for (uint64_t i = 0; i < bench::kRoundTrips; ++i) {
      to_pong.put(v);
      v = to_ping.take();
    }
  });
  std::thread ponger([&] {
    for (uint64_t i = 0; i < bench::kRoundTrips; ++i) to_ping.put(to_pong.take() + 1);
  });
  pinger.join();
  ponger.join();
  const double s = seconds_since(t0);
  return {s, bench::expect("final value", v, bench::kRoundTrips)};
}

// --- registration: one timed run per call; --benchmark_repetitions gives the medians ------
void yield_pingpong_w1(benchmark::State& st) {
  if (!pool_for(st, 1)) return;
  Outcome out;
  if (bench::timed(st, out, fiber_yield_pingpong)) st.counters["ns_per_yield"] = out.seconds * 1e9 / bench::kYieldN;
}
void yield_pingpong_floor(benchmark::State& st) {
  Outcome out;
  if (bench::timed(st, out, context_switch_floor)) st.counters["ns_per_switch"] = out.seconds * 1e9 / bench::kYieldN;
}
void spawn_join(benchmark::State& st, unsigned threads) {
  if (!pool_for(st, threads)) return;
  Outcome out;
  if (!bench::timed(st, out, fiber_spawn_join)) return;
  st.counters["ns_per_task"] = out.seconds * 1e9 / bench::kSpawnN;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
void spawn_join_w1(benchmark::State& st) { spawn_join(st, 1); }
void spawn_join_w2(benchmark::State& st) { spawn_join(st, 2); }
void skynet_w2(benchmark::State& st) {
  if (!pool_for(st, 2)) return;
  Outcome out;
  if (!bench::timed(st, out, fiber_skynet_run)) return;
  st.counters["total_ms"] = out.seconds * 1e3;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
void cross_thread_pingpong_w2(benchmark::State& st) {
  FiberPool* pool = pool_for(st, 2);
  if (!pool) return;
  Outcome out;
  if (bench::timed(st, out, [pool] { return fiber_cross_thread(*pool); }))
    st.counters["us_per_round_trip"] = out.seconds * 1e6 / bench::kRoundTrips;
}
void cross_thread_pingpong_suspend_w2(benchmark::State& st) {
  FiberPool* pool = pool_for(st, 2, /*suspend=*/true);
  if (!pool) return;
  Outcome out;
  if (bench::timed(st, out, [pool] { return fiber_cross_thread(*pool); }))
    st.counters["us_per_round_trip"] = out.seconds * 1e6 / bench::kRoundTrips;
}
void cross_thread_pingpong_floor(benchmark::State& st) {
  Outcome out;
  if (bench::timed(st, out, thread_cv_pingpong))
    st.counters["us_per_round_trip"] = out.seconds * 1e6 / bench::kRoundTrips;
}

#define WORKLOAD(fn) BENCHMARK(fn)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond)
WORKLOAD(yield_pingpong_floor);
WORKLOAD(cross_thread_pingpong_floor);
WORKLOAD(yield_pingpong_w1);
WORKLOAD(spawn_join_w1);
WORKLOAD(spawn_join_w2);
WORKLOAD(skynet_w2);
WORKLOAD(cross_thread_pingpong_w2);
WORKLOAD(cross_thread_pingpong_suspend_w2);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_pool.reset();  // stop and join the Boost.Fiber helper threads
  return 0;
}
