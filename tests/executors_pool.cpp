// The blocking thread pool, to_thread and run_in_executor, and handing work between the
// runtime and foreign threads.
//
// Under TSan Catch2's CHECK is not thread-safe: tasks and pool jobs only record what they
// see (atomics, or vectors under a mutex); the checks run on the test's own thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spindle/executors.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

// A one-shot gate pool jobs can block on.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    std::lock_guard lk(mu);
    open = true;
    cv.notify_all();
  }
  void wait() {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return open; });
  }
};

// Polls pred on the calling (non-runtime) thread for up to `limit`.
template <class P>
bool eventually(P pred, std::chrono::milliseconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

// Counts how many jobs run at once, and the most ever seen.
struct Concurrency {
  std::atomic<int> now{0};
  std::atomic<int> most{0};
  void enter() {
    // acq_rel: pairs with leave()'s decrement, so the count seen here includes every
    // job that entered and has not left; no other data depends on it.
    const int n = now.fetch_add(1, std::memory_order_acq_rel) + 1;
    int m = most.load(std::memory_order_relaxed);  // relaxed: a max, CAS-retried below
    while (n > m && !most.compare_exchange_weak(m, n, std::memory_order_relaxed)) {
    }
  }
  void leave() {
    now.fetch_sub(1, std::memory_order_acq_rel);  // pairs with enter()'s increment
  }
};

}  // namespace

TEST_CASE("the loop keeps running while to_thread calls block", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  auto [during, a, b] = rt.block_on([] {
    std::atomic<bool> stop{false};
    std::atomic<int> ticks{0};
    auto ticker = spawn([&] {
      // relaxed: a flag and a counter read after the joins below (which order them).
      while (!stop.load(std::memory_order_relaxed)) {
        ticks.fetch_add(1, std::memory_order_relaxed);
        sleep(5ms);
      }
    });
    const int before = ticks.load(std::memory_order_relaxed);
    auto t1 = spawn([] {
      return to_thread([] {
        std::this_thread::sleep_for(200ms);
        return 1;
      });
    });
    auto t2 = spawn([] {
      return to_thread([] {
        std::this_thread::sleep_for(200ms);
        return 2;
      });
    });
    const int r1 = t1.get();
    const int r2 = t2.get();
    const int during = ticks.load(std::memory_order_relaxed) - before;
    stop.store(true, std::memory_order_relaxed);
    ticker.get();
    return std::tuple{during, r1, r2};
  });
  CHECK(a == 1);
  CHECK(b == 2);
  // 200 ms of 5 ms ticks is about 40; a blocked loop would give 0 or 1.
  CHECK(during >= 5);
}

TEST_CASE("to_thread returns values, moves move-only ones, and rethrows exceptions", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  struct Out {
    std::string s;
    int moved = 0;
    bool void_ran = false;
    std::string error;
    bool custom = false;
    std::thread::id caller, job;
  };
  Out out = rt.block_on([] {
    Out o;
    o.s = to_thread([](std::string a, int b) { return a + std::to_string(b); }, std::string("x"), 42);
    auto p = std::make_unique<int>(7);
    auto q = to_thread([](std::unique_ptr<int> v) { return std::make_unique<int>(*v * 2); }, std::move(p));
    o.moved = *q;
    std::atomic<bool> ran{false};
    // relaxed: to_thread's completion (the future's release/acquire) orders it.
    to_thread([&] { ran.store(true, std::memory_order_relaxed); });
    o.void_ran = ran.load(std::memory_order_relaxed);
    try {
      to_thread([]() -> int { throw std::runtime_error("boom in a pool thread"); });
    } catch (const std::runtime_error& e) {
      o.error = e.what();
    }
    struct Custom {
      int code;
    };
    try {
      to_thread([] { throw Custom{5}; });
    } catch (const Custom& c) {
      o.custom = c.code == 5;
    }
    o.job = to_thread([] { return std::this_thread::get_id(); });
    return o;
  });
  CHECK(out.s == "x42");
  CHECK(out.moved == 14);
  CHECK(out.void_ran);
  CHECK(out.error == "boom in a pool thread");
  CHECK(out.custom);
}

TEST_CASE("many to_thread calls from many tasks all return", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  const int count = 10'000 / test::kScaleDown;
  const long long sum = rt.block_on([count] {
    std::vector<Task<int>> ts;
    ts.reserve(count);
    for (int i = 0; i < count; ++i) ts.push_back(spawn([i] { return to_thread([i] { return i; }); }));
    long long s = 0;
    for (auto& t : ts) s += t.get();
    return s;
  });
  CHECK(sum == (long long)count * (count - 1) / 2);
}

TEST_CASE("to_thread never runs more threads than Options::blocking_threads", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  auto o = test::opts(n);
  o.blocking_threads = 2;
  test::Checked harness(o);
  Runtime& rt = harness.rt;
  Concurrency c;
  rt.block_on([&] {
    std::vector<Task<>> ts;
    for (int i = 0; i < 16; ++i)
      ts.push_back(spawn([&] {
        to_thread([&] {
          c.enter();
          std::this_thread::sleep_for(2ms);
          c.leave();
        });
      }));
    for (auto& t : ts) t.get();
  });
  CHECK(c.most.load() <= 2);
  CHECK(c.most.load() >= 1);
}

TEST_CASE("a full ThreadPool queues jobs and starts them in FIFO order", "[executors]") {
  ThreadPool pool(1);
  Gate gate;
  std::mutex mu;
  std::vector<int> order;
  std::atomic<bool> blocking{false};
  pool.submit([&] {
    blocking.store(true);  // seq_cst: a test flag polled below
    gate.wait();
  });
  REQUIRE(eventually([&] { return blocking.load(); }));
  for (int i = 0; i < 50; ++i)
    pool.submit([&, i] {
      std::lock_guard lk(mu);
      order.push_back(i);
    });
  CHECK(pool.queued() == 50);
  CHECK(pool.threads() == 1);
  gate.release();
  pool.shutdown(true);
  REQUIRE(order.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(order[i] == i);
}

TEST_CASE("a ThreadPool never runs more than max_workers threads", "[executors]") {
  const unsigned max = GENERATE(1u, 3u, 8u);
  ThreadPool pool(max);
  Concurrency c;
  std::atomic<std::size_t> most_threads{0};
  for (int i = 0; i < 100; ++i)
    pool.submit([&] {
      c.enter();
      std::this_thread::sleep_for(1ms);
      c.leave();
    });
  while (pool.queued() > 0) {
    // relaxed: only this thread touches it.
    most_threads.store(std::max(most_threads.load(std::memory_order_relaxed), pool.threads()),
                       std::memory_order_relaxed);
    std::this_thread::sleep_for(100us);
  }
  pool.shutdown(true);
  CHECK(c.most.load() <= int(max));
  CHECK(c.most.load() >= 1);
  CHECK(most_threads.load() <= max);
  CHECK(pool.threads() == 0);
}

TEST_CASE("idle ThreadPool threads exit after the keep-alive, and new work starts them again", "[executors]") {
  ThreadPool pool(4, 50ms);
  CHECK(pool.threads() == 0);  // threads start on demand
  Gate gate;
  std::atomic<int> started{0};
  for (int i = 0; i < 4; ++i)
    pool.submit([&] {
      started.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter polled below
      gate.wait();
    });
  CHECK(eventually([&] { return started.load() == 4; }));
  CHECK(pool.threads() == 4);
  CHECK(pool.busy() == 4);
  gate.release();
  CHECK(eventually([&] { return pool.threads() == 0; }));
  std::atomic<bool> ran{false};
  pool.submit([&] { ran.store(true); });
  CHECK(eventually([&] { return ran.load(); }));
  CHECK(pool.threads() <= 1);
}

TEST_CASE("ThreadPool rejects bad input and work after shutdown", "[executors]") {
  CHECK_THROWS_AS(ThreadPool(0), std::invalid_argument);
  ThreadPool pool(2);
  CHECK_THROWS_AS(pool.submit(nullptr), std::invalid_argument);
  pool.shutdown(true);
  pool.shutdown(false);  // idempotent
  CHECK_THROWS_AS(pool.submit([] {}), BrokenExecutor);
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  const bool broken = rt.block_on([&] {
    try {
      run_in_executor(pool, [] { return 1; });
    } catch (const BrokenExecutor&) {
      return true;
    }
    return false;
  });
  CHECK(broken);
}

namespace {
// User executors modelling the documented interface.
struct InlineExecutor {
  int calls = 0;
  void submit(std::function<void()> job) {
    ++calls;
    job();
  }
};
struct ThreadPerJobExecutor {
  std::mutex mu;
  std::vector<std::thread> threads;
  void submit(std::function<void()> job) {
    std::lock_guard lk(mu);
    threads.emplace_back(std::move(job));
  }
  ~ThreadPerJobExecutor() {
    for (auto& t : threads) t.join();
  }
};
struct DroppingExecutor {
  void submit(std::function<void()>) {}
};
struct RefusingExecutor {
  void submit(std::function<void()>) { throw std::runtime_error("no room"); }
};
static_assert(Executor<ThreadPool>);
static_assert(Executor<InlineExecutor>);
static_assert(!Executor<int>);
}  // namespace

TEST_CASE("run_in_executor works with ThreadPool and with user executors", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  ThreadPool pool(3);
  InlineExecutor inl;
  ThreadPerJobExecutor per;
  DroppingExecutor drop;
  RefusingExecutor refuse;
  struct Out {
    int pooled = 0, inlined = 0, threaded = 0;
    bool dropped = false, refused = false;
    std::string err;
  };
  Out out = rt.block_on([&] {
    Out o;
    o.pooled = run_in_executor(
        pool, [](int a, int b) { return a * b; }, 6, 7);
    o.inlined = run_in_executor(inl, [] { return 5; });
    o.threaded = run_in_executor(per, [] { return 9; });
    try {
      run_in_executor(pool, [] { throw std::logic_error("from the pool"); });
    } catch (const std::logic_error& e) {
      o.err = e.what();
    }
    try {
      run_in_executor(drop, [] { return 1; });
    } catch (const BrokenExecutor&) {
      o.dropped = true;
    }
    try {
      run_in_executor(refuse, [] { return 1; });
    } catch (const std::runtime_error& e) {
      o.refused = std::string(e.what()) == "no room";
    }
    return o;
  });
  CHECK(out.pooled == 42);
  CHECK(out.inlined == 5);
  CHECK(inl.calls == 1);
  CHECK(out.threaded == 9);
  CHECK(out.err == "from the pool");
  CHECK(out.dropped);
  CHECK(out.refused);
  // From a foreign thread, run_in_executor blocks it.
  CHECK(run_in_executor(pool, [] { return 3; }) == 3);
}

TEST_CASE("cancelling a task waiting in to_thread abandons the wait; the job still finishes", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  std::atomic<bool> job_started{false};
  std::atomic<bool> job_done{false};
  Gate gate;
  auto t = rt.spawn([&] {
    return to_thread([&] {
      job_started.store(true);  // seq_cst: test flags, polled by the test thread
      gate.wait();
      job_done.store(true);
      return 1;
    });
  });
  REQUIRE(eventually([&] { return job_started.load(); }));
  CHECK(t.cancel("stop waiting"));
  bool cancelled = false;
  try {
    t.get();
  } catch (const CancelledError& e) {
    cancelled = e.message() == "stop waiting";
  }
  CHECK(cancelled);
  CHECK_FALSE(job_done.load());  // the caller did not wait for the job
  gate.release();
  CHECK(eventually([&] { return job_done.load(); }));
}

TEST_CASE("to_thread from a thread outside any runtime runs inline", "[executors]") {
  const auto me = std::this_thread::get_id();
  CHECK(to_thread([] { return std::this_thread::get_id(); }) == me);
  CHECK(to_thread([](int a) { return a + 1; }, 1) == 2);
  CHECK_THROWS_AS(to_thread([] { throw std::runtime_error("x"); }), std::runtime_error);
}

TEST_CASE("a foreign thread spawns into the runtime and blocks on the result", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  std::vector<int> results(4, 0);
  std::vector<std::thread> ths;
  for (int i = 0; i < 4; ++i)
    ths.emplace_back([&rt, &results, i] {
      auto t = rt.spawn([i] {
        sleep(1ms);
        return to_thread([i] { return i * 10; }) + 1;
      });
      results[i] = t.get();  // blocks this thread only
    });
  for (auto& th : ths) th.join();
  for (int i = 0; i < 4; ++i) CHECK(results[i] == i * 10 + 1);
}

TEST_CASE("a fibre awaits a future a std::thread completes, while its loop goes on", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  Future<std::string> f;
  std::thread th;
  auto [value, ticks] = rt.block_on([&] {
    std::atomic<int> ticks{0};
    std::atomic<bool> stop{false};
    auto ticker = spawn([&] {
      while (!stop.load(std::memory_order_relaxed)) {  // relaxed: joined below
        ticks.fetch_add(1, std::memory_order_relaxed);
        sleep(2ms);
      }
    });
    th = std::thread([f]() mutable {
      std::this_thread::sleep_for(50ms);
      f.set_result("from a std::thread");
    });
    std::string v = f.get();
    stop.store(true, std::memory_order_relaxed);
    ticker.get();
    return std::pair{v, ticks.load(std::memory_order_relaxed)};
  });
  th.join();
  CHECK(value == "from a std::thread");
  CHECK(ticks >= 3);
}

TEST_CASE("two runtimes, one after another, each get a working blocking pool", "[executors]") {
  for (int round = 0; round < 3; ++round) {
    auto o = test::opts(2);
    o.blocking_threads = 1 + round;
    test::Checked harness(o);
    Runtime& rt = harness.rt;
    Concurrency c;
    rt.block_on([&] {
      std::vector<Task<>> ts;
      for (int i = 0; i < 8; ++i)
        ts.push_back(spawn([&] {
          to_thread([&] {
            c.enter();
            std::this_thread::sleep_for(1ms);
            c.leave();
          });
        }));
      for (auto& t : ts) t.get();
    });
    CHECK(c.most.load() <= 1 + round);
  }
}

TEST_CASE("a runtime's blocking pool is released and shut down when the runtime ends", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  std::weak_ptr<ThreadPool> weak;
  {
    test::Checked harness(n);
    Runtime& rt = harness.rt;
    weak = rt.block_on([] {
      to_thread([] {});
      return std::weak_ptr<ThreadPool>(detail::blocking_pool());
    });
    CHECK_FALSE(weak.expired());
  }
  // The workers' cached references went with their threads; nothing else holds it.
  CHECK(weak.expired());
}

namespace {
// Threads of this process now (entries of /proc/self/task).
std::size_t process_threads() {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}
}  // namespace

TEST_CASE("a runtime made after a dead one gets a pool of its own", "[executors]") {
  // Each runtime owns its blocking pool: a new runtime (often at the dead one's address,
  // which mimalloc hands back at once) must neither get the old pool (kept alive here on
  // purpose) nor its bound.
  for (int round = 0; round < 20; ++round) {
    std::shared_ptr<ThreadPool> old;
    {
      auto o = test::opts(2);
      o.blocking_threads = 1;
      Runtime a(o);
      old = a.block_on([] {
        to_thread([] {});
        return detail::blocking_pool();
      });
    }
    auto o = test::opts(2);
    o.blocking_threads = 3;
    Runtime b(o);
    auto [same, max] = b.block_on([&] {
      to_thread([] {});
      const std::shared_ptr<ThreadPool> p = detail::blocking_pool();
      return std::pair{p == old, p->max_workers()};
    });
    CHECK_FALSE(same);
    CHECK(max == 3u);
    // The old pool still works for whoever holds it, within its own bound.
    CHECK(old->max_workers() == 1u);
    CHECK(run_in_executor(*old, [] { return 5; }) == 5);
  }
}

TEST_CASE("a runtime's shutdown runs the queued blocking jobs and joins the pool's threads", "[executors]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::size_t before = process_threads();
  std::atomic<int> finished{0};
  std::atomic<int> started{0};
  {
    auto o = test::opts(n);
    o.blocking_threads = 2;
    test::Checked harness(o);
    Runtime& rt = harness.rt;
    // Two callers whose jobs outlive them: shutdown cancels the callers (abandoning
    // the waits), then must wait for the jobs before it returns. Both jobs must have
    // started first: a caller that has not run yet is cancelled before it submits one.
    for (int i = 0; i < 2; ++i)
      rt.spawn([&] {
        to_thread([&] {
          started.fetch_add(1);  // seq_cst: test counters
          std::this_thread::sleep_for(100ms);
          finished.fetch_add(1);
        });
      });
    REQUIRE(eventually([&] { return started.load() == 2; }));
  }
  CHECK(finished.load() == 2);
  CHECK(process_threads() == before);  // the workers and the pool threads are gone
}

TEST_CASE("a blocking job that outlasts the shutdown's wait is detached and reported", "[executors]") {
  test::Reports reports;
  Gate gate;
  std::atomic<bool> started{false};
  std::atomic<bool> done{false};
  const auto t0 = std::chrono::steady_clock::now();
  {
    // The task stuck in to_thread is what the test is about: shutdown must give up on it.
    test::Checked harness(test::opts(2, &reports), {.reports = true, .live_tasks = true});
    Runtime& rt = harness.rt;
    rt.spawn([&] {
      to_thread([&] {
        started.store(true);  // seq_cst: test flags
        gate.wait();
        done.store(true);
      });
    });
    REQUIRE(eventually([&] { return started.load(); }));
  }
  // The runtime gave up on the job (after its bounded wait) rather than hang.
  CHECK(std::chrono::steady_clock::now() - t0 < 60s);
  CHECK_FALSE(done.load());
  bool reported = false;
  for (const Report& r : reports.all())
    reported = reported || (r.kind == Report::Kind::task_would_not_end && r.task_name == "to_thread");
  CHECK(reported);
  gate.release();
  CHECK(eventually([&] { return done.load(); }));  // it finished on its detached thread
}

TEST_CASE("ThreadPool::shutdown_for joins idle threads, and detaches a busy one at the timeout", "[executors]") {
  {
    ThreadPool pool(3);
    std::atomic<int> ran{0};
    for (int i = 0; i < 30; ++i) pool.submit([&] { ran.fetch_add(1); });
    CHECK(pool.shutdown_for(10s));  // queued jobs run first
    CHECK(ran.load() == 30);
    CHECK(pool.threads() == 0);
    CHECK_THROWS_AS(pool.submit([] {}), BrokenExecutor);
  }
  Gate gate;
  std::atomic<bool> started{false};
  std::atomic<bool> done{false};
  {
    ThreadPool pool(1);
    pool.submit([&] {
      started.store(true);  // seq_cst: test flags
      gate.wait();
      done.store(true);
    });
    REQUIRE(eventually([&] { return started.load(); }));
    CHECK_FALSE(pool.shutdown_for(20ms));
    CHECK_FALSE(done.load());
  }  // the destructor does not wait for the detached thread
  CHECK_FALSE(done.load());
  gate.release();
  CHECK(eventually([&] { return done.load(); }));
}

TEST_CASE("ThreadPool rejects a negative spin and 0 workers", "[executors]") {
  CHECK_THROWS_AS(ThreadPool(ThreadPoolOptions{.max_workers = 1, .spin = -1us}), std::invalid_argument);
  CHECK_THROWS_AS(ThreadPool(ThreadPoolOptions{.max_workers = 0}), std::invalid_argument);
}

TEST_CASE("a ThreadPool with or without spinning runs jobs submitted one after another", "[executors]") {
  // Spinning changes how an idle thread waits for the next job, never which jobs run.
  const auto spin = GENERATE(0us, 50us, 5000us);
  ThreadPool pool(ThreadPoolOptions{.max_workers = 2, .spin = spin});
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  const long long sum = rt.block_on([&] {
    long long s = 0;
    for (int i = 0; i < 2000 / test::kScaleDown; ++i) s += run_in_executor(pool, [i] { return i; });
    // A pause longer than the spin, then more: the sleeping thread is woken.
    sleep(20ms);
    for (int i = 0; i < 10; ++i) s += run_in_executor(pool, [] { return 1; });
    return s;
  });
  const long long m = 2000 / test::kScaleDown;
  CHECK(sum == m * (m - 1) / 2 + 10);
  // From foreign threads at once too.
  std::vector<std::thread> ths;
  std::atomic<int> total{0};
  for (int t = 0; t < 4; ++t)
    ths.emplace_back([&] {
      for (int i = 0; i < 200; ++i) total.fetch_add(run_in_executor(pool, [] { return 1; }));
    });
  for (auto& th : ths) th.join();
  CHECK(total.load() == 800);
}
