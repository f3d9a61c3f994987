// yield(): a yielder writes no scheduling state (it stays RUNNING while it waits in its
// loop's queue, see runtime/src/core/task_state.hpp), and a lone worker pops its queue
// without a CAS. These cases check what that must keep: a cancellation still lands at a
// yield (from a task, a pinned task's loop and a foreign thread), a wake that lands on a
// queued yielder is kept, loops full of yielders still fire timers, deliver I/O and run
// work submitted from other threads, a queued yielder reads as ready (not running) to
// Task::where() and task_infos(), and every yielder gets its turns.
#include <spindle/io.hpp>
#include <spindle/spindle.hpp>
#include <spindle/sync.hpp>

#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

// Yields until `stop`, counting its turns.
void spin_yield(const std::atomic<bool>& stop, std::atomic<uint64_t>& turns) {
  while (!stop.load(std::memory_order_acquire)) {
    turns.fetch_add(1, std::memory_order_relaxed);
    yield();
  }
}

}  // namespace

TEST_CASE("a task yielding in a loop is cancelled at a yield, from a task and from a foreign thread", "[yield]") {
  const unsigned n = SPINDLE_WORKERS();
  const bool pinned = GENERATE(false, true);
  const bool foreign = GENERATE(false, true);
  test::Checked h(n);
  h.block_on([&] {
    std::atomic<uint64_t> turns{0};
    TaskOptions o;
    o.pinned = pinned;
    auto yielder = spawn(o, [&] {
      for (;;) {
        turns.fetch_add(1, std::memory_order_relaxed);
        yield();
      }
    });
    // Some yields first, so the cancel meets a task that is queued or running after one.
    while (turns.load(std::memory_order_relaxed) < 100) yield();
    if (foreign) {
      std::thread([&] { yielder.cancel("stop"); }).join();
    } else {
      yielder.cancel("stop");
    }
    CHECK_THROWS_AS(yielder.get(), CancelledError);
    CHECK(yielder.cancelled());
  });
}

TEST_CASE("a yielder that catches its cancellation then waits is woken by a later set", "[yield]") {
  // The cancel's wake lands on the task while it yields (it only marks it: the task is
  // queued already); the mark must make no wait hang or end early afterwards.
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  h.block_on([&] {
    Event go;
    std::atomic<bool> caught{false};
    auto t = spawn([&] {
      try {
        for (;;) yield();
      } catch (const CancelledError&) {
        caught = true;
      }
      go.wait();
      return 7;
    });
    while (!test::has_started(t)) yield();
    t.cancel();
    while (!caught.load()) yield();
    for (int k = 0; k < 10; ++k) yield();  // let it reach the wait
    CHECK_FALSE(t.done());
    go.set();
    CHECK(t.get() == 7);
  });
}

TEST_CASE("loops full of yielders still fire timers, deliver I/O and run work from other threads", "[yield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  Runtime& rt = h.rt;
  h.block_on([&] {
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> turns{0};
    std::vector<Task<>> yielders;
    for (unsigned i = 0; i < 2 * n; ++i) yielders.push_back(spawn([&] { spin_yield(stop, turns); }));
    while (turns.load(std::memory_order_relaxed) < 1000) yield();

    // A timer, on this loop and on the others (each sleeper is started wherever it lands).
    std::vector<Task<int>> sleepers;
    for (unsigned i = 0; i < n; ++i)
      sleepers.push_back(spawn([i] {
        sleep(1ms);
        return int(i);
      }));
    for (unsigned i = 0; i < n; ++i) CHECK(sleepers[i].get() == int(i));

    // I/O: a reader waits for bytes a foreign thread writes.
    auto [a, b] = UnixStream::pair();
    auto reader = spawn([&a] { return a.read_exact(5); });
    std::thread writer([&b] {
      const int fd = b.native_handle();
      const char msg[] = "hello";
      std::size_t off = 0;
      while (off < 5) {
        const ssize_t k = ::write(fd, msg + off, 5 - off);
        if (k > 0) off += std::size_t(k);
      }
    });
    CHECK(reader.get() == "hello");
    writer.join();

    // Work submitted from a foreign thread (the global queue, and the inbox of a pinned
    // task's loop).
    std::atomic<int> ran{0};
    std::thread submitter([&] {
      rt.call_soon([&] { ran.fetch_add(1); });
      rt.spawn(TaskOptions{.pinned = true, .loop = int(n - 1)}, [&] { ran.fetch_add(1); });
    });
    submitter.join();
    while (ran.load() < 2) sleep(100us);

    stop.store(true, std::memory_order_release);
    for (auto& y : yielders) y.get();
  });
}

TEST_CASE("a queued yielder reads as ready; every yielder on a loop gets its turns", "[yield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  h.block_on([&] {
    constexpr int kYielders = 4;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> turns[kYielders] = {};
    // Everything pinned to one loop: whenever the observer runs, no yielder is running.
    const TaskOptions on_loop{.name = "yielder", .pinned = true, .loop = int(n - 1)};
    std::vector<Task<>> ys;
    for (int i = 0; i < kYielders; ++i) ys.push_back(spawn(on_loop, [&, i] { spin_yield(stop, turns[i]); }));
    TaskOptions observer = on_loop;
    observer.name = "observer";
    spawn(observer, [&] {
      for (int i = 0; i < kYielders; ++i)
        while (turns[i].load(std::memory_order_relaxed) == 0) yield();
      for (auto& y : ys) {
        const TaskWhere w = y.where();
        CHECK(w.started);
        CHECK(w.state == TaskState::ready);
        CHECK(w.line != 0);  // where it yielded
        test::until_suspended(y);
      }
      unsigned listed = 0;
      for (const TaskInfo& info : task_infos())
        if (info.name == "yielder") {
          ++listed;
          CHECK(info.where.state == TaskState::ready);
        }
      CHECK(listed == kYielders);
      // Round and round: while we yield 1000 times, each of them yields too.
      uint64_t before[kYielders];
      for (int i = 0; i < kYielders; ++i) before[i] = turns[i].load(std::memory_order_relaxed);
      for (int k = 0; k < 1000; ++k) yield();
      for (int i = 0; i < kYielders; ++i) CHECK(turns[i].load(std::memory_order_relaxed) > before[i]);
      stop.store(true, std::memory_order_release);
    }).get();
    for (auto& y : ys) y.get();
  });
}
