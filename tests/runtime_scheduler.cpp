// The scheduler: migration between workers, pinned tasks, several runtimes, shutdown with
// work in flight, stack sizes and stack overflow.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace spindle;

namespace {
thread_local std::thread::id tls_id = std::this_thread::get_id();

__attribute__((noinline)) std::thread::id read_tls() { return tls_id; }
}  // namespace

TEST_CASE("a fibre suspended on one worker resumes on another; thread-locals follow the thread", "[scheduler]") {
  const unsigned n = GENERATE(2u, 4u, 8u);
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  std::set<std::thread::id> seen;
  bool tls_ok = true;
  rt.spawn([&] {
      // Each round the future is set by a task pinned to loop i, which wakes us onto its
      // own worker (the waker's LIFO slot).
      for (int round = 0; round < 40; ++round) {
        Future<> f;
        const int loop = round % int(n);
        spawn(TaskOptions{.pinned = true, .loop = loop}, [f]() mutable {
          for (int k = 0; k < 50; ++k) yield();  // let the waiter suspend first
          f.set_result();
        });
        f.get();
        seen.insert(std::this_thread::get_id());
        tls_ok = tls_ok && read_tls() == std::this_thread::get_id();
      }
    }).get();
  CHECK(seen.size() >= 2);
  CHECK(tls_ok);
}

TEST_CASE("pinned tasks never migrate", "[scheduler]") {
  const unsigned n = GENERATE(2u, 4u, 8u);
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  std::vector<Task<bool>> ts;
  for (unsigned loop = 0; loop < n; ++loop) {
    ts.push_back(rt.spawn(TaskOptions{.pinned = true, .loop = int(loop)}, [] {
      const auto me = std::this_thread::get_id();
      bool same = true;
      for (int i = 0; i < 300; ++i) {
        Future<> f;
        spawn([f]() mutable { f.set_result(); });  // woken from whichever worker runs this
        f.get();
        yield();
        same = same && std::this_thread::get_id() == me;
      }
      return same;
    }));
  }
  for (auto& t : ts) CHECK(t.get());
}

TEST_CASE("busy workers' queues are stolen by idle ones", "[scheduler]") {
  test::Checked harness(4);
  Runtime& rt = harness.rt;
  std::set<std::thread::id> threads;
  std::mutex mu;
  rt.block_on([&] {
    std::vector<Task<>> ts;
    for (int i = 0; i < 2000; ++i)
      ts.push_back(spawn([&] {
        volatile double x = 0;
        for (int k = 0; k < 2000; ++k) x = x + k;
        std::lock_guard lk(mu);
        threads.insert(std::this_thread::get_id());
      }));
    for (auto& t : ts) t.get();
  });
  CHECK(threads.size() >= 2);
}

// On one worker, the order in which 8 just-spawned tasks run, over 40 rounds.
std::set<std::vector<int>> run_orders(bool shuffle) {
  Options o = test::opts(1);
  o.shuffle = shuffle;
  test::Checked harness(o);
  Runtime& rt = harness.rt;
  std::set<std::vector<int>> orders;
  rt.block_on([&] {
    for (int round = 0; round < 40; ++round) {
      std::vector<int> order;  // one worker: the tasks never run at once
      std::vector<Task<>> ts;
      for (int i = 0; i < 8; ++i) ts.push_back(spawn([&order, i] { order.push_back(i); }));
      for (auto& t : ts) t.get();
      std::vector<int> sorted = order;
      std::sort(sorted.begin(), sorted.end());
      CHECK(sorted == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});  // each ran exactly once
      orders.insert(order);
    }
  });
  return orders;
}

TEST_CASE("Options::shuffle varies the order ready tasks run in; every task still runs once", "[scheduler]") {
  CHECK(run_orders(false).size() == 1);  // without it, one loop runs them in a fixed order
  CHECK(run_orders(true).size() > 1);
}

TEST_CASE("tasks woken in a burst do not wait behind a backlog of unstarted tasks", "[scheduler]") {
  // One loop, 300 tasks suspended on a future, then 4,000 new tasks spawned (most of them
  // go out to the global queue: the run queue holds 256), then the future completes and
  // wakes the 300 at once. The run queue overflows again; the woken tasks moved out must
  // be taken before the 4,000 new ones, not queued behind them.
  test::Checked harness(1);
  Runtime& rt = harness.rt;
  constexpr int kWoken = 300, kNew = 4000;
  std::vector<int> order;  // one worker: the tasks never run at once
  rt.block_on([&] {
    Future<void> go;
    int waiting = 0;
    std::vector<Task<>> woken, fresh;
    for (int i = 0; i < kWoken; ++i)
      woken.push_back(spawn([&, i] {
        ++waiting;
        go.get();
        order.push_back(i);
      }));
    while (waiting < kWoken) yield();
    for (int i = 0; i < kNew; ++i) fresh.push_back(spawn([&, i] { order.push_back(kWoken + i); }));
    go.set_result();
    for (auto& t : woken) t.get();
    for (auto& t : fresh) t.get();
  });
  REQUIRE(order.size() == std::size_t(kWoken + kNew));
  std::size_t last_woken = 0;
  for (std::size_t k = 0; k < order.size(); ++k)
    if (order[k] < kWoken) last_woken = k;
  // Queued behind the new tasks, the last woken one would run at position 4,299 (it did).
  CHECK(last_woken < std::size_t(kNew / 2));
  CHECK(rt.metrics().workers[0].tasks_spilled > 0);  // the burst did overflow the run queue
}

TEST_CASE("bursts of wake-ups over a backlog, on several loops: every task runs once", "[scheduler][stress]") {
  // The spill and global queues under contention (more loops than cores with 4 and 8):
  // each round wakes 300 suspended tasks at once on whichever loops they ran on, while
  // 1,500 new ones wait; every task must run exactly once.
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  constexpr int kWoken = 300, kNew = 1500, kRounds = 2;
  rt.block_on([&] {
    for (int round = 0; round < kRounds; ++round) {
      std::vector<std::atomic<int>> runs(kWoken + kNew);
      Future<void> go;
      std::atomic<int> waiting{0};
      std::vector<Task<>> tasks;
      for (int i = 0; i < kWoken; ++i)
        tasks.push_back(spawn([&, i] {
          ++waiting;
          go.get();
          ++runs[i];
        }));
      while (waiting < kWoken) yield();
      for (int i = 0; i < kNew; ++i) tasks.push_back(spawn([&, i] { ++runs[kWoken + i]; }));
      go.set_result();
      for (auto& t : tasks) t.get();
      int wrong = 0;
      for (auto& r : runs) wrong += r.load() != 1;
      REQUIRE(wrong == 0);
    }
  });
  uint64_t spilled = 0;
  for (const WorkerMetrics& w : rt.metrics().workers) spilled += w.tasks_spilled;
  // The run queues did overflow, the case this test is about. With many thieves the
  // spawner's queue may be drained as fast as it fills, so only asserted for 1-2 loops.
  if (n <= 2) CHECK(spilled > 0);
}

TEST_CASE("two runtimes side by side, and one after another", "[scheduler]") {
  {
    Runtime a(test::opts(2)), b(test::opts(2));
    Future<int> from_b;
    auto ta = a.spawn([from_b]() mutable { return from_b.get() + 1; });
    auto tb = b.spawn([from_b]() mutable {
      yield();
      from_b.set_result(41);
    });
    CHECK(ta.get() == 42);
    tb.get();
  }
  for (int i = 0; i < 20; ++i) {
    CHECK(run([i] { return spawn([i] { return i * 2; }).get(); }, test::opts(1 + i % 3)) == i * 2);
  }
}

TEST_CASE("shutdown cancels what is left, awaits it, and reports tasks that would not end", "[scheduler][shutdown]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  std::atomic<int> cleaned{0};
  std::atomic<bool> stubborn_gave_up{false};
  Task<> stubborn;
  std::vector<Task<>> waiting;
  {
    test::Checked harness(test::opts(n, &reports), {.reports = true});  // the test checks its reports
    Runtime& rt = harness.rt;
    Future<> never;
    for (int i = 0; i < 50; ++i)
      waiting.push_back(rt.spawn([&, never]() mutable {
        try {
          never.get();
        } catch (const CancelledError&) {
          ++cleaned;
          throw;
        }
      }));
    stubborn = rt.spawn(TaskOptions{.name = "stubborn"}, [&, never]() mutable {
      for (;;) {
        try {
          Future<> f;
          f.get();
        } catch (const CancelledError&) {
          // Refuses to end... until its cancellation becomes sticky and it gives up.
          if (stubborn_gave_up.exchange(true)) throw;
        }
      }
    });
    // Every task must be waiting before shutdown begins (a task that has not started is
    // cancelled without running: the stubborn one would then never get to refuse).
    for (auto& t : waiting)
      while (!test::has_suspended(t)) std::this_thread::yield();
    while (!test::has_suspended(stubborn)) std::this_thread::yield();
    rt.shutdown(std::chrono::milliseconds(100));
    CHECK(rt.closed());
  }
  CHECK(cleaned == 50);
  for (auto& t : waiting) CHECK(t.cancelled());
  CHECK(stubborn.cancelled());
  // It swallowed the first cancellation, so it outlived the grace period and was
  // reported; its cancellation then became sticky and it gave up.
  bool named = false;
  for (auto& r : reports.all())
    named = named || (r.kind == Report::Kind::task_would_not_end && r.task_name == "stubborn");
  CHECK(named);
}

TEST_CASE("a task that ignores cancellation is reported, then cancelled for good", "[scheduler][shutdown]") {
  test::Reports reports;
  Task<int> stubborn;
  {
    test::Checked harness(test::opts(2, &reports), {.reports = true});  // the test checks its reports
    Runtime& rt = harness.rt;
    stubborn = rt.spawn(TaskOptions{.name = "ignores-cancel"}, [] {
      int swallowed = 0;
      for (;;) {
        try {
          Future<> f;
          f.get();
        } catch (const CancelledError&) {
          if (++swallowed > 1000) throw;  // sticky: every wait is cancelled again
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
      return swallowed;
    });
    while (!test::has_suspended(stubborn)) std::this_thread::yield();
    rt.shutdown(std::chrono::milliseconds(20));
  }
  CHECK(stubborn.cancelled());
  bool named = false;
  for (auto& r : reports.all())
    named = named || (r.kind == Report::Kind::task_would_not_end && r.task_name == "ignores-cancel");
  CHECK(named);
}

TEST_CASE("unstarted tasks at shutdown end cancelled without running", "[scheduler][shutdown]") {
  std::atomic<int> ran{0};
  std::vector<Task<>> ts;
  {
    test::Checked harness(1);
    Runtime& rt = harness.rt;
    Future<> block;
    // The one worker is parked in this task until shutdown cancels it; everything
    // queued behind it is still unstarted then.
    auto blocker = rt.spawn([block]() mutable { block.get(); });
    while (!test::has_started(blocker)) std::this_thread::yield();
    for (int i = 0; i < 100; ++i) ts.push_back(rt.spawn([&] { ++ran; }));
    rt.shutdown(std::chrono::seconds(5));
  }
  int cancelled = 0;
  for (auto& t : ts) cancelled += t.cancelled();
  CHECK(cancelled + ran == 100);
  for (auto& t : ts) CHECK(t.done());
}

TEST_CASE("per-spawn stack size", "[scheduler]") {
  test::Checked harness(2);
  Runtime& rt = harness.rt;
  auto t = rt.spawn(TaskOptions{.stack_size = 2 * 1024 * 1024}, [] {
    volatile char big[1024 * 1024];
    for (std::size_t i = 0; i < sizeof big; i += 4096) big[i] = 1;
    return int(big[4096]);
  });
  CHECK(t.get() == 1);
}

TEST_CASE("a stack overflow is reported with the task's name, then the process aborts", "[scheduler]") {
  const char* child = std::getenv("SPINDLE_OVERFLOW_CHILD");
  REQUIRE(child != nullptr);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  char* argv[] = {const_cast<char*>(child), nullptr};
  pid_t pid;
  REQUIRE(posix_spawn(&pid, child, &fa, nullptr, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  std::string err;
  char buf[4096];
  for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) > 0;) err.append(buf, r);
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO(err);
  CHECK(WIFSIGNALED(status));
  CHECK(err.find("stack overflow in task 'deep-recursion'") != std::string::npos);
}

TEST_CASE("a fibre suspended inside a catch block keeps its exception across switches and threads", "[scheduler]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    std::vector<Task<std::string>> ts;
    for (int i = 0; i < 64; ++i)
      ts.push_back(spawn([i]() -> std::string {
        try {
          throw std::runtime_error("mine-" + std::to_string(i));
        } catch (const std::exception&) {
          // Other fibres throw and catch on this thread meanwhile; we may move threads.
          for (int k = 0; k < 20; ++k) {
            yield();
            try {
              throw std::logic_error("noise");
            } catch (const std::logic_error&) {
            }
          }
          try {
            throw;  // rethrows *our* exception, not another fibre's
          } catch (const std::runtime_error& e) {
            return e.what();
          }
        }
      }));
    for (int i = 0; i < 64; ++i) CHECK(ts[i].get() == "mine-" + std::to_string(i));
    CHECK(std::uncaught_exceptions() == 0);
  });
}
