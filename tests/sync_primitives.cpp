// sync/: Event, Lock, Condition, Semaphore / BoundedSemaphore, Barrier — asyncio's
// semantics, FIFO fairness, cancellation that leaves no trace, and use from fibres on
// several workers and from foreign threads. Every case runs over 1, 2, 4 and 8 workers.
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spindle/sync.hpp>

#include "support.hpp"

using namespace spindle;

namespace {

using test::until_suspended;

using Rt = test::QuietRuntime;

}  // namespace

// ---- Event ------------------------------------------------------------------------------

TEST_CASE("Event: set releases every waiter; a wait after set returns at once; clear re-arms", "[sync][event]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Event ev;
    CHECK_FALSE(ev.is_set());
    std::atomic<int> released{0};
    std::vector<Task<>> waiters;
    for (int i = 0; i < 20; ++i)
      waiters.push_back(spawn([&] {
        ev.wait();
        ++released;
      }));
    for (auto& t : waiters) until_suspended(t);
    CHECK(released == 0);
    ev.set();
    CHECK(ev.is_set());
    for (auto& t : waiters) t.get();
    CHECK(released == 20);

    ev.wait();  // already set: returns at once
    ev.set();   // harmless twice
    ev.clear();
    CHECK_FALSE(ev.is_set());
    auto late = spawn([&] { ev.wait(); });
    until_suspended(late);
    CHECK_FALSE(late.done());
    ev.set();
    late.get();
  });
}

TEST_CASE("Event: waiters released by set stay released when clear follows at once", "[sync][event]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Event ev;
    auto a = spawn([&] { ev.wait(); });
    until_suspended(a);
    ev.set();
    ev.clear();
    a.get();  // asyncio: set() already released it
  });
}

TEST_CASE("Event: between fibres and foreign threads, both ways", "[sync][event]") {
  Rt r(SPINDLE_WORKERS());
  Event to_fibre, to_thread;
  auto t = r.rt.spawn([&] {
    to_fibre.wait();
    to_thread.set();
  });
  std::thread th([&] {
    to_fibre.set();
    to_thread.wait();  // blocks this thread until the fibre sets it
  });
  th.join();
  t.get();
  CHECK(to_thread.is_set());
}

TEST_CASE("Event: a cancelled waiter raises CancelledError and the others are still released",
          "[sync][event][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Event ev;
    std::atomic<int> released{0};
    auto a = spawn([&] {
      ev.wait();
      ++released;
    });
    auto b = spawn([&] {
      ev.wait();
      ++released;
    });
    auto c = spawn([&] {
      ev.wait();
      ++released;
    });
    until_suspended(a);
    until_suspended(b);
    until_suspended(c);
    b.cancel("stop");
    try {
      b.get();
      FAIL("expected CancelledError");
    } catch (const CancelledError& e) {
      CHECK(e.message() == "stop");
    }
    ev.set();
    a.get();
    c.get();
    CHECK(released == 2);
  });
}

TEST_CASE("Event: Task::where names the line of the wait", "[sync][event]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Event ev;
    auto t = spawn([&] { ev.wait(); });
    until_suspended(t);
    const TaskWhere w = t.where();
    CHECK(w.state == TaskState::suspended);
    CHECK(w.file.find("sync_primitives.cpp") != std::string::npos);
    CHECK(w.line > 0);
    ev.set();
    t.get();
  });
}

// ---- Lock -------------------------------------------------------------------------------

TEST_CASE("Lock: lock, try_lock, unlock, and use with the standard guards", "[sync][lock]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock l;
    CHECK_FALSE(l.locked());
    l.lock();
    CHECK(l.locked());
    CHECK(l.held_by_caller());
    CHECK_FALSE(l.try_lock());
    l.unlock();
    CHECK_FALSE(l.locked());
    CHECK(l.try_lock());
    l.unlock();
    {
      std::scoped_lock g(l);
      CHECK(l.locked());
    }
    CHECK_FALSE(l.locked());
    {
      std::unique_lock g(l);
      CHECK(g.owns_lock());
      g.unlock();
      CHECK_FALSE(l.locked());
      CHECK(g.try_lock());
    }
    CHECK_FALSE(l.locked());
  });
}

TEST_CASE("Lock: unlocking a lock the caller does not hold throws RuntimeError", "[sync][lock]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock l;
    CHECK_THROWS_AS(l.unlock(), RuntimeError);  // not locked at all
    l.lock();
    // (Assertions stay on this task: Catch2 is not thread-safe.)
    auto refused = [&] {
      if (l.held_by_caller()) return false;
      try {
        l.unlock();
      } catch (const RuntimeError&) {
        return true;
      }
      return false;
    };
    CHECK(spawn(refused).get());  // held by another task
    CHECK(l.locked());
    bool thread_refused = false;
    std::thread([&] { thread_refused = refused(); }).join();  // nor a foreign thread
    CHECK(thread_refused);
    l.unlock();
  });
}

TEST_CASE("Lock: waiters get the lock in arrival order", "[sync][lock]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock l;
    std::mutex order_mu;
    std::vector<int> order;
    l.lock();
    std::vector<Task<>> ts;
    for (int i = 0; i < 5; ++i) {
      ts.push_back(spawn([&, i] {
        std::scoped_lock g(l);
        std::lock_guard og(order_mu);
        order.push_back(i);
      }));
      until_suspended(ts.back());  // queued before the next one starts
    }
    l.unlock();
    for (auto& t : ts) t.get();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
    CHECK_FALSE(l.locked());
  });
}

TEST_CASE("Lock: a woken waiter that loses the race keeps its place at the head", "[sync][lock]") {
  Rt r(1);  // one worker: the woken waiter cannot run before we re-take the lock
  r.rt.block_on([] {
    Lock l;
    std::vector<int> order;
    l.lock();
    auto a = spawn([&] {
      std::scoped_lock g(l);
      order.push_back(1);
    });
    until_suspended(a);
    auto b = spawn([&] {
      std::scoped_lock g(l);
      order.push_back(2);
    });
    until_suspended(b);
    l.unlock();  // wakes a ...
    l.lock();    // ... but we are running and take the free lock first (normal mode)
    yield();     // a runs, finds it held, goes back to the head of the queue
    l.unlock();
    a.get();
    b.get();
    CHECK(order == std::vector<int>{1, 2});
  });
}

TEST_CASE("Lock: a waiter overtaken after waiting over 1 ms gets the lock handed to it", "[sync][lock]") {
  Rt r(1);
  r.rt.block_on([] {
    Lock l;
    l.lock();
    auto a = spawn([&] { std::scoped_lock g(l); });
    until_suspended(a);
    sleep(std::chrono::milliseconds(3));  // a has now waited more than the threshold
    l.unlock();                           // wakes a
    l.lock();                             // overtakes it once more
    yield();                              // a loses the race: starvation mode
    l.unlock();                           // hands the lock straight to a
    CHECK(l.locked());
    CHECK_FALSE(l.try_lock());  // a newcomer cannot take it now
    a.get();
    CHECK_FALSE(l.locked());
    CHECK(l.try_lock());  // and the mode ended with the queue
    l.unlock();
  });
}

TEST_CASE("Lock: mutual exclusion across workers (a plain counter)", "[sync][lock]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock l;
    long counter = 0;  // not atomic: the lock is what protects it
    std::vector<Task<>> ts;
    for (int k = 0; k < 8; ++k)
      ts.push_back(spawn([&] {
        for (int i = 0; i < 2000; ++i) {
          std::scoped_lock g(l);
          const long v = counter;
          if (i % 64 == 0) yield();  // sometimes suspend while holding it
          counter = v + 1;
        }
      }));
    for (auto& t : ts) t.get();
    CHECK(counter == 8 * 2000);
    CHECK_FALSE(l.locked());
  });
}

TEST_CASE("Lock: a cancelled waiter does not take the lock and loses no one's turn", "[sync][lock][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock l;
    std::atomic<int> got{0};
    l.lock();
    auto a = spawn([&] {
      std::scoped_lock g(l);
      got += 1;
    });
    until_suspended(a);
    auto b = spawn([&] {
      std::scoped_lock g(l);
      got += 10;
    });
    until_suspended(b);
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    CHECK(l.held_by_caller());  // still ours: the cancelled waiter took nothing
    l.unlock();
    b.get();  // b's turn was not lost
    CHECK(got == 10);
    CHECK_FALSE(l.locked());
  });
}

TEST_CASE("Lock: a waiter handed the lock and then cancelled keeps no lock after raising", "[sync][lock][cancel]") {
  // One worker: the hand-off (unlock) lands before the waiter runs again, then it is
  // cancelled. Its lock() raises without taking the lock (asyncio; it used to
  // return holding it); the lock is free afterwards and the next waiter gets it.
  Rt r(1);
  r.rt.block_on([] {
    Lock l;
    std::atomic<bool> a_had_it{false};
    l.lock();
    auto a = spawn([&] {
      l.lock();
      a_had_it = true;
      l.unlock();
      yield();  // the pending cancellation is raised here
    });
    until_suspended(a);
    auto b = spawn([&] { std::scoped_lock g(l); });
    until_suspended(b);
    l.unlock();
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    CHECK_FALSE(a_had_it);
    b.get();
    CHECK_FALSE(l.locked());
  });
}

TEST_CASE("Lock: fibres and a foreign thread contend for one lock", "[sync][lock]") {
  Rt r(SPINDLE_WORKERS());
  Lock l;
  long counter = 0;
  std::vector<Task<>> ts;
  for (int k = 0; k < 4; ++k)
    ts.push_back(r.rt.spawn([&] {
      for (int i = 0; i < 1000; ++i) {
        std::scoped_lock g(l);
        ++counter;
      }
    }));
  std::thread th([&] {
    for (int i = 0; i < 1000; ++i) {
      std::scoped_lock g(l);  // blocks the thread while a fibre holds it
      ++counter;
    }
  });
  th.join();
  for (auto& t : ts) t.get();
  CHECK(counter == 5000);
}

// ---- Condition --------------------------------------------------------------------------

TEST_CASE("Condition: wait(pred) sleeps until notified with the predicate true", "[sync][condition]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Condition cv;
    int stage = 0;
    bool locked_after = false;
    auto waiter = spawn([&] {
      std::unique_lock g(cv);
      cv.wait([&] { return stage == 2; });
      locked_after = cv.locked();  // holds the lock again
      stage = 3;
    });
    until_suspended(waiter);
    {
      std::scoped_lock g(cv);
      stage = 1;
      cv.notify();  // wakes it; its predicate is false: it waits again
    }
    yield();
    {
      std::scoped_lock g(cv);
      stage = 2;
      cv.notify_all();
    }
    waiter.get();
    CHECK(stage == 3);
    CHECK(locked_after);
  });
}

TEST_CASE("Condition: notify(n) wakes n waiters, oldest first; notify_all the rest", "[sync][condition]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock lk;
    Condition cv(lk);
    std::vector<int> woke;
    std::vector<Task<>> ts;
    for (int i = 0; i < 5; ++i) {
      ts.push_back(spawn([&, i] {
        std::scoped_lock g(cv);
        cv.wait();
        woke.push_back(i);  // under the lock
      }));
      until_suspended(ts.back());
    }
    {
      std::scoped_lock g(lk);
      cv.notify(2);
    }
    ts[0].get();
    ts[1].get();
    {
      std::scoped_lock g(lk);
      // The two oldest were woken (in which order they re-took the lock is the scheduler's).
      CHECK(std::set<int>(woke.begin(), woke.end()) == std::set<int>{0, 1});
      cv.notify_all();
    }
    for (auto& t : ts) t.get();
    std::scoped_lock g(lk);
    CHECK(woke.size() == 5);
    CHECK(std::set<int>(woke.begin(), woke.end()).size() == 5);
  });
}

TEST_CASE("Condition: wait or notify without holding the lock throws RuntimeError", "[sync][condition]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Condition cv;
    CHECK_THROWS_AS(cv.wait(), RuntimeError);
    CHECK_THROWS_AS(cv.notify(), RuntimeError);
    CHECK_THROWS_AS(cv.notify_all(), RuntimeError);
    std::scoped_lock g(cv);
    auto other = spawn([&] {  // held by us, not by it
      try {
        cv.notify();
      } catch (const RuntimeError&) {
        return true;
      }
      return false;
    });
    CHECK(other.get());
  });
}

TEST_CASE("Condition: a cancelled waiter re-acquires the lock before CancelledError propagates",
          "[sync][condition][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock lk;
    Condition cv(lk);
    std::atomic<int> held_in_handler{-1};
    auto t = spawn([&] {
      std::scoped_lock g(lk);
      try {
        cv.wait();
      } catch (const CancelledError&) {
        held_in_handler = lk.held_by_caller() ? 1 : 0;
        throw;
      }
    });
    until_suspended(t);
    lk.lock();  // make the re-acquire wait for us
    t.cancel();
    for (int i = 0; i < 5; ++i) yield();
    CHECK(held_in_handler == -1);  // still waiting for the lock
    lk.unlock();
    CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK(held_in_handler == 1);
    CHECK_FALSE(lk.locked());
    // The cancelled waiter left the queue: a notify reaches the next one.
    auto u = spawn([&] {
      std::scoped_lock g(cv);
      cv.wait();
    });
    until_suspended(u);
    {
      std::scoped_lock g(cv);
      cv.notify();
    }
    u.get();
  });
}

TEST_CASE("Condition: a foreign thread waits, a fibre notifies", "[sync][condition]") {
  Rt r(SPINDLE_WORKERS());
  Condition cv;
  bool ready = false;
  std::thread th([&] {
    std::unique_lock g(cv);
    cv.wait([&] { return ready; });
  });
  r.rt.spawn([&] {
        for (int i = 0; i < 3; ++i) yield();
        std::scoped_lock g(cv);
        ready = true;
        cv.notify_all();
      })
      .get();
  th.join();
  CHECK(ready);
}

// ---- Semaphore --------------------------------------------------------------------------

TEST_CASE("Semaphore: counts permits; acquire waits at zero; release wakes a waiter", "[sync][semaphore]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Semaphore s(2);
    CHECK(s.value() == 2);
    s.acquire();
    CHECK(s.try_acquire());
    CHECK(s.value() == 0);
    CHECK(s.locked());
    CHECK_FALSE(s.try_acquire());
    auto t = spawn([&] { s.acquire(); });
    until_suspended(t);
    CHECK_FALSE(t.done());
    s.release();  // straight to the waiter
    t.get();
    CHECK(s.value() == 0);
    s.release();
    s.release();
    s.release();  // a plain Semaphore may go above its initial value
    CHECK(s.value() == 3);
  });
}

TEST_CASE("Semaphore: bad values and over-release are rejected", "[sync][semaphore]") {
  CHECK_THROWS_AS(Semaphore(-1), std::invalid_argument);
  CHECK_THROWS_AS(BoundedSemaphore(-3), std::invalid_argument);
  CHECK_NOTHROW(Semaphore(0));
  BoundedSemaphore b(1);
  CHECK_THROWS_AS(b.release(), std::invalid_argument);  // foreign thread: no runtime needed
  b.acquire();
  b.release();
  CHECK_THROWS_AS(b.release(), std::invalid_argument);
  CHECK(b.value() == 1);
}

TEST_CASE("Semaphore: FIFO, and a task that releases and re-acquires goes behind the waiters", "[sync][semaphore]") {
  // asyncio's test_acquire_fifo_order_2: results must be 1, 2, 3, 4.
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Semaphore s(1);
    std::mutex mu;
    std::vector<int> result;
    auto note = [&](int v) {
      std::lock_guard g(mu);
      result.push_back(v);
    };
    s.acquire();
    auto c2 = spawn([&] {
      s.acquire();
      note(2);
      s.release();
      s.acquire();
      note(4);
      s.release();
    });
    until_suspended(c2);
    auto c3 = spawn([&] {
      s.acquire();
      note(3);
      s.release();
    });
    until_suspended(c3);
    note(1);
    s.release();
    c2.get();
    c3.get();
    CHECK(result == std::vector<int>{1, 2, 3, 4});
    CHECK(s.value() == 1);
  });
}

TEST_CASE("Semaphore: RAII permits release at scope end, move, and release early", "[sync][semaphore]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    BoundedSemaphore s(2);
    {
      auto p = s.permit();
      CHECK(p.owns());
      CHECK(s.value() == 1);
      SemaphorePermit q(s);
      CHECK(s.value() == 0);
      SemaphorePermit moved = std::move(q);
      CHECK_FALSE(q.owns());
      CHECK(moved.owns());
      moved.release();
      CHECK_FALSE(moved);
      CHECK(s.value() == 1);
    }
    CHECK(s.value() == 2);
  });
}

TEST_CASE("Semaphore: limits concurrency across workers", "[sync][semaphore]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Semaphore s(3);
    std::atomic<int> inside{0}, peak{0};
    std::vector<Task<>> ts;
    for (int k = 0; k < 24; ++k)
      ts.push_back(spawn([&] {
        for (int i = 0; i < 50; ++i) {
          auto p = s.permit();
          const int now = ++inside;
          int seen = peak.load();
          while (now > seen && !peak.compare_exchange_weak(seen, now)) {
          }
          yield();
          --inside;
        }
      }));
    for (auto& t : ts) t.get();
    CHECK(peak <= 3);
    CHECK(s.value() == 3);
  });
}

TEST_CASE("Semaphore: a cancelled waiter leaves no trace; the permit goes to the next one",
          "[sync][semaphore][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Semaphore s(0);
    auto a = spawn([&] { s.acquire(); });
    until_suspended(a);
    auto b = spawn([&] { s.acquire(); });
    until_suspended(b);
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    CHECK(s.value() == 0);
    s.release();
    b.get();
    CHECK(s.value() == 0);
  });
}

TEST_CASE("Semaphore: a waiter handed a permit and then cancelled passes it on", "[sync][semaphore][cancel]") {
  Rt r(1);  // as for Lock: the hand-off lands first, the cancellation is raised later
  r.rt.block_on([] {
    Semaphore s(0);
    auto a = spawn([&] {
      auto p = s.permit();
      yield();  // raises; the permit goes back as the stack unwinds
    });
    until_suspended(a);
    s.release();
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    CHECK(s.value() == 1);
  });
}

TEST_CASE("Semaphore: a foreign thread blocks until a fibre releases", "[sync][semaphore]") {
  Rt r(SPINDLE_WORKERS());
  Semaphore s(0);
  std::atomic<bool> through{false};
  std::thread th([&] {
    s.acquire();
    through = true;
  });
  r.rt.spawn([&] {
        for (int i = 0; i < 3; ++i) yield();
        s.release();
      })
      .get();
  th.join();
  CHECK(through);
}

// ---- Barrier ----------------------------------------------------------------------------

TEST_CASE("Barrier: each round releases all parties with unique arrival indices; it is reusable", "[sync][barrier]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    constexpr std::size_t kParties = 4;
    Barrier b(kParties);
    CHECK(b.parties() == kParties);
    std::mutex mu;
    std::vector<std::multiset<std::size_t>> seen(5);
    std::vector<Task<>> ts;
    for (std::size_t k = 0; k < kParties; ++k)
      ts.push_back(spawn([&] {
        for (int round = 0; round < 5; ++round) {
          const std::size_t idx = b.wait();
          std::lock_guard g(mu);
          seen[round].insert(idx);
        }
      }));
    for (auto& t : ts) t.get();
    for (auto& s : seen) CHECK(s == std::multiset<std::size_t>{0, 1, 2, 3});
    CHECK(b.n_waiting() == 0);
    CHECK_FALSE(b.broken());
  });
}

TEST_CASE("Barrier: the arrival index follows arrival order", "[sync][barrier]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Barrier b(3);
    auto first = spawn([&] { return b.wait(); });
    until_suspended(first);
    auto second = spawn([&] { return b.wait(); });
    until_suspended(second);
    CHECK(b.n_waiting() == 2);
    CHECK(b.wait() == 2);
    CHECK(first.get() == 0);
    CHECK(second.get() == 1);
  });
}

TEST_CASE("Barrier: zero parties is rejected; one party never waits", "[sync][barrier]") {
  CHECK_THROWS_AS(Barrier(0), std::invalid_argument);
  Barrier one(1);
  CHECK(one.wait() == 0);  // a foreign thread: would block if it waited
  CHECK(one.wait() == 0);
}

TEST_CASE("Barrier: abort breaks current and later waits; reset repairs it", "[sync][barrier]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Barrier b(3);
    auto a = spawn([&] { return b.wait(); });
    until_suspended(a);
    b.abort();
    CHECK(b.broken());
    CHECK_THROWS_AS(a.get(), BrokenBarrierError);
    CHECK_THROWS_AS(b.wait(), BrokenBarrierError);
    b.reset();
    CHECK_FALSE(b.broken());
    auto x = spawn([&] { return b.wait(); });
    auto y = spawn([&] { return b.wait(); });
    const std::size_t z = b.wait();
    CHECK(x.get() + y.get() + z == 0 + 1 + 2);
  });
}

TEST_CASE("Barrier: reset releases the waiters with BrokenBarrierError and empties the round", "[sync][barrier]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Barrier b(3);
    auto a = spawn([&] { return b.wait(); });
    auto c = spawn([&] { return b.wait(); });
    until_suspended(a);
    until_suspended(c);
    b.reset();
    CHECK_THROWS_AS(a.get(), BrokenBarrierError);
    CHECK_THROWS_AS(c.get(), BrokenBarrierError);
    CHECK(b.n_waiting() == 0);
    CHECK_FALSE(b.broken());
  });
}

TEST_CASE("Barrier: a cancelled waiter leaves the round, which then needs one more party", "[sync][barrier][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Barrier b(3);
    auto a = spawn([&] { return b.wait(); });
    until_suspended(a);
    auto c = spawn([&] { return b.wait(); });
    until_suspended(c);
    CHECK(b.n_waiting() == 2);
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    CHECK(b.n_waiting() == 1);
    auto d = spawn([&] { return b.wait(); });
    until_suspended(d);
    CHECK_FALSE(c.done());
    const std::size_t last = b.wait();
    std::multiset<std::size_t> idx{c.get(), d.get(), last};
    CHECK(idx == std::multiset<std::size_t>{0, 1, 2});  // still unique
  });
}

TEST_CASE("Barrier: foreign threads and fibres meet at one barrier", "[sync][barrier]") {
  Rt r(SPINDLE_WORKERS());
  Barrier b(4);
  std::atomic<std::size_t> sum{0};
  std::vector<std::thread> ths;
  for (int i = 0; i < 2; ++i) ths.emplace_back([&] { sum += b.wait(); });
  auto f1 = r.rt.spawn([&] { sum += b.wait(); });
  auto f2 = r.rt.spawn([&] { sum += b.wait(); });
  for (auto& t : ths) t.join();
  f1.get();
  f2.get();
  CHECK(sum == 0 + 1 + 2 + 3);
}

// ---- with the runtime's timeouts --------------------------------------------------------

TEST_CASE("Waits compose with wait_for and timeout, and a timed-out wait leaves no trace", "[sync][timeout]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    using namespace std::chrono_literals;
    Event ev;  // asyncio.wait_for(event.wait(), t)
    CHECK_THROWS_AS(wait_for([&] { ev.wait(); }, 5ms), TimeoutError);
    Lock l;  // async with asyncio.timeout(t): async with lock
    l.lock();
    CHECK_THROWS_AS(timeout(5ms, [&] { std::scoped_lock g(l); }), TimeoutError);
    Semaphore s(0);
    CHECK_THROWS_AS(wait_for([&] { s.acquire(); }, 5ms), TimeoutError);
    Barrier b(2);
    CHECK_THROWS_AS(wait_for([&] { return b.wait(); }, 5ms), TimeoutError);
    CHECK(b.n_waiting() == 0);
    l.unlock();
    CHECK(l.try_lock());  // nobody is still queued for it
    l.unlock();
    s.release();
    CHECK(s.value() == 1);  // the permit was not handed to the timed-out acquirer
    auto t = spawn([&] { ev.wait(); });
    until_suspended(t);
    ev.set();
    t.get();
  });
}
