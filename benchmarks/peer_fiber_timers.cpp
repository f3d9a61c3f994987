// The Boost.Fiber peer of bench_timers.cpp: Boost.Fiber 1.74, work_stealing on 2 threads
// (this thread and one helper that lends its scheduler until the process ends).
//  - timers_w2: 100,000 fibres (launch::post), fibre i sleeps d_i ms (this_fiber::sleep_for,
//    the same LCG), joined in order; total ms and peak RSS.
//  - timer_cancel_w2: Boost.Fiber has no timer object: a timer is a fibre blocked in a
//    timed wait, kept in its scheduler's sleep queue. The closest equivalent of "insert
//    and cancel" is therefore: a fibre arms a timed condition-variable wait (1-100 s,
//    the same LCG: it never times out), and another notifies it, which takes it off the
//    sleep queue. 10,000 waiter fibres each do this 100 times (1,000,000 timers; 10,000
//    at most armed at once, since a million fibres would not fit), every wait cancelled
//    by one canceller fibre. Figure: ns per timer. Unlike spindle's call_later + cancel,
//    each timer here also costs the two fibre switches Boost.Fiber cannot avoid.
//  - wait_for_w2: 200,000 times, fibers::async(launch::post) a function returning at
//    once, future::wait_for(1 s), then get(); beside it the same with get() alone.
//  - timers_floor_w2: not Boost.Fiber: the 100,000 sleepers on raw Boost.Context with
//    no scheduler at all (see below): what any runtime that gives each sleeping task its
//    own stack pays at least on this machine.
#include <sys/mman.h>

#include <boost/context/fiber.hpp>
#include <boost/fiber/all.hpp>

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <new>
#include <queue>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::Clock;
using bench::Outcome;
using bench::seconds_since;
namespace fibers = boost::fibers;

constexpr uint64_t kSleepers = 100'000;
constexpr uint64_t kTimers = 1'000'000;
constexpr uint64_t kWaiters = 10'000;  // timer_cancel: fibres, each arming kTimers / kWaiters timers
constexpr uint64_t kWaitFors = 200'000;

std::vector<uint32_t> lcg_delays(uint64_t n) {
  std::vector<uint32_t> d(n);
  uint64_t x = 42;
  for (uint64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    d[i] = uint32_t(1 + (x >> 33) % 100);
  }
  return d;
}

// Two work-stealing schedulers: this thread's and a helper's. The helper parks its main
// fibre on a fibre condition variable, so its scheduler runs (and steals) fibres until
// the process asks it to stop. work_stealing's setup is process-wide and one-shot.
class TwoThreads {
 public:
  TwoThreads() {
    helper_ = std::thread([this] {
      fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(2);
      std::unique_lock lk(m_);
      cv_.wait(lk, [this] { return stop_; });
    });
    fibers::use_scheduling_algorithm<fibers::algo::work_stealing>(2);  // returns when both joined
  }
  ~TwoThreads() {
    {
      std::unique_lock lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    helper_.join();
  }

 private:
  fibers::mutex m_;
  fibers::condition_variable cv_;
  bool stop_ = false;
  std::thread helper_;
};

std::unique_ptr<TwoThreads> g_threads;
void ensure_threads() {
  if (!g_threads) g_threads = std::make_unique<TwoThreads>();
}

// --- timers: 100,000 sleeping fibres --------------------------------------------------------
Outcome fiber_timers() {
  const std::vector<uint32_t> delay = lcg_delays(kSleepers);
  uint64_t want = 0;
  for (uint32_t d : delay) want += d;
  std::vector<uint32_t> slept(kSleepers, 0);
  std::vector<fibers::fiber> fs;
  fs.reserve(kSleepers);
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < kSleepers; ++i)
    fs.emplace_back(fibers::launch::post, [&slept, i, d = delay[i]] {
      boost::this_fiber::sleep_for(std::chrono::milliseconds(d));
      slept[i] = d;
    });
  for (auto& f : fs) f.join();
  const double s = seconds_since(t0);
  uint64_t got = 0;
  for (uint32_t d : slept) got += d;
  return {s, bench::expect("sum of delays", got, want)};
}

// --- timer_cancel: timed waits armed and cancelled by a notify --------------------------------
struct Slot {
  fibers::mutex m;
  fibers::condition_variable cv;
  bool cancel = false;
};

Outcome fiber_timer_cancel() {
  const std::vector<uint32_t> delay = lcg_delays(kTimers);
  const uint64_t rounds = kTimers / kWaiters;
  std::vector<Slot> slots(kWaiters);
  std::atomic<uint64_t> armed{0}, timed_out{0}, cancelled{0};
  std::vector<fibers::fiber> fs;
  fs.reserve(kWaiters);
  const auto t0 = Clock::now();
  for (uint64_t k = 0; k < kWaiters; ++k)
    fs.emplace_back(fibers::launch::post, [&, k] {
      Slot& s = slots[k];
      for (uint64_t r = 0; r < rounds; ++r) {
        std::unique_lock lk(s.m);
        // relaxed: a count the canceller polls; the slot's mutex orders the hand-over.
        armed.fetch_add(1, std::memory_order_relaxed);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(delay[r * kWaiters + k]);
        // relaxed: tallies read after every fibre was joined (join orders them).
        if (s.cv.wait_until(lk, deadline, [&] { return s.cancel; })) {
          cancelled.fetch_add(1, std::memory_order_relaxed);
        } else {
          timed_out.fetch_add(1, std::memory_order_relaxed);
        }
        s.cancel = false;
      }
    });
  for (uint64_t r = 0; r < rounds; ++r) {
    // Every waiter has armed its timer of this round (it holds its slot's mutex until
    // it is in the wait, so locking the slot below finds it waiting).
    // relaxed: only a hint to stop polling; the slot mutex taken below is what orders.
    while (armed.load(std::memory_order_relaxed) < (r + 1) * kWaiters) boost::this_fiber::yield();
    for (auto& s : slots) {
      {
        std::unique_lock lk(s.m);
        s.cancel = true;
      }
      s.cv.notify_one();
    }
  }
  for (auto& f : fs) f.join();
  const double s = seconds_since(t0);
  std::string err = bench::expect("cancelled", cancelled.load(), kTimers);
  if (err.empty()) err = bench::expect("timed out", timed_out.load(), 0);
  return {s, err};
}

// --- wait_for: future::wait_for on a fibre that returns at once --------------------------------
struct WaitForOutcome {
  Outcome wait_for;
  double get_seconds = 0;
};

WaitForOutcome fiber_wait_for() {
  WaitForOutcome r;
  uint64_t sum = 0;
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < kWaitFors; ++i) sum += fibers::async(fibers::launch::post, [] { return uint64_t(1); }).get();
  r.get_seconds = seconds_since(t0);
  t0 = Clock::now();
  uint64_t timeouts = 0;
  for (uint64_t i = 0; i < kWaitFors; ++i) {
    auto f = fibers::async(fibers::launch::post, [] { return uint64_t(1); });
    if (f.wait_for(std::chrono::seconds(1)) != fibers::future_status::ready) ++timeouts;
    sum += f.get();
  }
  const double s = seconds_since(t0);
  std::string err = bench::expect("sum", sum, 2 * kWaitFors);
  if (err.empty()) err = bench::expect("timeouts", timeouts, 0);
  r.wait_for = Outcome{s, err};
  return r;
}

// --- timers_floor: the 100,000 sleepers on raw Boost.Context ---------------------------------
// The least a stackful runtime can do for this workload: two threads, each starting every
// other task on a stack of spindle's default size (256 KiB, first touched when its task
// starts, reused last-in first-out once a task ends), each with one binary heap of
// deadlines; no scheduler, no stealing, no guard pages, no allocation per task. A thread
// fires its due deadlines after every 16 starts and, once all its tasks have started,
// sleeps until the next deadline. Most of its time is the kernel's: the first touch of
// each stack is a page fault.
namespace ctx = boost::context;
constexpr std::size_t kFloorStack = 256 * 1024;

// One thread's stacks: one reservation, carved in order, freed stacks reused first.
class FloorStacks {
 public:
  explicit FloorStacks(std::size_t n) : bytes_(n * kFloorStack) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    base_ = static_cast<char*>(p);
  }
  ~FloorStacks() { munmap(base_, bytes_); }
  FloorStacks(const FloorStacks&) = delete;
  FloorStacks& operator=(const FloorStacks&) = delete;

  char* take() {
    if (!free_.empty()) {
      char* s = free_.back();
      free_.pop_back();
      return s;
    }
    if (carved_ == bytes_) throw std::bad_alloc();
    carved_ += kFloorStack;
    return base_ + carved_ - kFloorStack;
  }
  void give(char* s) { free_.push_back(s); }

 private:
  std::size_t bytes_, carved_ = 0;
  char* base_;
  std::vector<char*> free_;
};

// Boost.Context's stack allocator interface over FloorStacks (copied into each fibre).
struct FloorAlloc {
  FloorStacks* stacks;
  ctx::stack_context allocate() {
    ctx::stack_context sc;
    sc.size = kFloorStack;
    sc.sp = stacks->take() + kFloorStack;
    return sc;
  }
  void deallocate(ctx::stack_context& sc) noexcept { stacks->give(static_cast<char*>(sc.sp) - kFloorStack); }
};

struct Deadline {
  int64_t due_ns;
  uint64_t task;
  bool operator>(const Deadline& o) const { return due_ns > o.due_ns; }
};

// Runs tasks first, first + 2, ... on this thread; returns the sum of their delays.
uint64_t floor_thread(uint64_t first, const std::vector<uint32_t>& delay, Clock::time_point t0) {
  FloorStacks stacks(kSleepers / 2 + 1);
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> heap;
  std::vector<ctx::fiber> sleeping(kSleepers);  // indexed by task; only this thread's used
  uint64_t slept = 0;
  const auto ns = [t0] { return (Clock::now() - t0).count(); };
  const auto fire_due = [&] {
    const int64_t now = ns();
    while (!heap.empty() && heap.top().due_ns <= now) {
      const uint64_t i = heap.top().task;
      heap.pop();
      sleeping[i] = std::move(sleeping[i]).resume();  // runs to its end: empty fibre back
    }
  };
  uint64_t started = 0;
  for (uint64_t i = first; i < kSleepers; i += 2) {
    ctx::fiber task(std::allocator_arg, FloorAlloc{&stacks}, [&, i](ctx::fiber&& back) {
      heap.push(Deadline{ns() + int64_t(delay[i]) * 1'000'000, i});
      back = std::move(back).resume();  // asleep until fire_due resumes it
      slept += delay[i];
      return std::move(back);
    });
    sleeping[i] = std::move(task).resume();
    if (++started % 16 == 0) fire_due();
  }
  while (!heap.empty()) {
    std::this_thread::sleep_until(t0 + std::chrono::nanoseconds(heap.top().due_ns));
    fire_due();
  }
  return slept;
}

Outcome floor_timers() {
  const std::vector<uint32_t> delay = lcg_delays(kSleepers);
  uint64_t want = 0;
  for (uint32_t d : delay) want += d;
  uint64_t slept[2] = {0, 0};
  Clock::time_point t0;
  std::latch go(1);  // count_down happens before wait returns: t0 is set when they read it
  std::vector<std::thread> threads;
  for (uint64_t k = 0; k < 2; ++k)
    threads.emplace_back([&, k] {
      go.wait();
      slept[k] = floor_thread(k, delay, t0);
    });
  t0 = Clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  const double s = seconds_since(t0);
  return {s, bench::expect("sum of delays", slept[0] + slept[1], want)};
}

// --- registration --------------------------------------------------------------------------
void timers_w2(benchmark::State& st) {
  ensure_threads();
  Outcome out;
  if (!bench::timed(st, out, fiber_timers)) return;
  st.counters["total_ms"] = out.seconds * 1e3;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
void timers_floor_w2(benchmark::State& st) {
  Outcome out;
  const double cpu0 = bench::process_cpu_seconds();
  const long faults0 = bench::process_minor_faults();
  if (!bench::timed(st, out, floor_timers)) return;
  st.counters["cpu_ms"] = (bench::process_cpu_seconds() - cpu0) * 1e3;  // as spindle's timers_w2
  st.counters["page_faults"] = double(bench::process_minor_faults() - faults0);
  st.counters["total_ms"] = out.seconds * 1e3;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
void timer_cancel_w2(benchmark::State& st) {
  ensure_threads();
  Outcome out;
  if (!bench::timed(st, out, fiber_timer_cancel)) return;
  st.counters["ns_per_timer"] = out.seconds * 1e9 / kTimers;
  st.counters["peak_rss_mb"] = bench::peak_rss_mb();
}
void wait_for_w2(benchmark::State& st) {
  ensure_threads();
  WaitForOutcome last;
  Outcome out;
  if (!bench::timed(st, out, [&] {
        last = fiber_wait_for();
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
WORKLOAD(timers_floor_w2);
WORKLOAD(timer_cancel_w2);
WORKLOAD(wait_for_w2);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_threads.reset();  // stop and join the helper thread
  return 0;
}
