// Cancel-then-serve races over the runtime's waits: a task waits (Future::get,
// Task::get, gather, wait, as_completed, shield, wait_for, a TaskGroup's join, a
// Generator's next/send, a JobScheduler's spawn and wait), and at once it is cancelled
// and what it waits for is served, in both orders, from one task, from two loops and
// from a foreign thread (tests/cancel_serve.hpp). Afterwards what was served is
// accounted for exactly once: returned by the cancelled wait (whose cancellation then
// stays pending), or left where it was (still queued, or the outcome of the future or
// task that got it), never lost and never both.
#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include <spindle/generator.hpp>
#include <spindle/job_scheduler.hpp>
#include <spindle/sync.hpp>
#include <spindle/task_group.hpp>
#include <spindle/waiting.hpp>

#include "cancel_serve.hpp"

using namespace spindle;
using test::Order;
using test::until_suspended;
using namespace std::chrono_literals;

namespace {

struct Tally {
  int returned = 0;  // the cancelled wait returned what was served
  int kept = 0;      // it raised CancelledError; the inner future/task holds the value
  int left = 0;      // it raised CancelledError; the item is still queued
  int lost = 0;      // nowhere
  int both = 0;      // in two places
  int wrong = 0;     // something else came back, or a rule of the wait was broken
};

#define CHECK_TALLY(t, n)                             \
  do {                                                \
    CHECK((t).lost == 0);                             \
    CHECK((t).both == 0);                             \
    CHECK((t).wrong == 0);                            \
    CHECK((t).returned + (t).kept + (t).left == (n)); \
  } while (0)

// ---- a task parked in q.get(), awaited through one of the waits ---------------------

enum class Via { task_get, gather, wait, as_completed, shield, wait_for, task_group };
constexpr Via kVias[] = {Via::task_get, Via::gather,   Via::wait,      Via::as_completed,
                         Via::shield,   Via::wait_for, Via::task_group};

const char* via_name(Via v) {
  switch (v) {
    case Via::task_get:
      return "Task::get";
    case Via::gather:
      return "gather";
    case Via::wait:
      return "wait";
    case Via::as_completed:
      return "as_completed";
    case Via::shield:
      return "shield";
    case Via::wait_for:
      return "wait_for(task)";
    case Via::task_group:
      return "TaskGroup::join";
  }
  return "?";
}

// wait, as_completed and shield leave the awaited task alone when their caller is
// cancelled; the others cancel it and join it.
bool cancels_inner(Via v) { return v != Via::wait && v != Via::as_completed && v != Via::shield; }

int await_via(Via via, Task<int> t) {
  switch (via) {
    case Via::task_get:
      return t.get();
    case Via::gather:
      return std::get<0>(gather(t));
    case Via::wait:
      (void)wait(std::vector<Task<int>>{t});
      return t.result();
    case Via::as_completed:
      for (auto h : as_completed(std::vector<Task<int>>{t})) return h.result();
      return -1;
    case Via::shield:
      return shield(t);
    case Via::wait_for:
      return wait_for(t, 1h);
    case Via::task_group:
      break;
  }
  return -1;
}

void task_round(Via via, Order order, test::Racer& racer, int x, Tally& tally) {
  Queue<int> q;
  Task<int> inner;
  std::atomic<bool> published{false};
  Task<int> outer;
  if (via == Via::task_group) {
    outer = spawn([&] {
      TaskGroup g;
      inner = g.spawn([&] { return q.get(); });
      // release: publishes `inner` to the test, which reads it after an acquire load.
      published.store(true, std::memory_order_release);
      g.join();
      return inner.result();
    });
  } else {
    inner = spawn([&] { return q.get(); });
    published.store(true, std::memory_order_release);
    outer = spawn([&, t = inner] { return await_via(via, t); });
  }
  while (!published.load(std::memory_order_acquire)) yield();
  until_suspended(inner);  // parked in q.get()
  until_suspended(outer);  // parked in the wait
  racer.cancel_and_serve(order, outer, [&] { q.put_nowait(x); });

  bool returned = false;
  try {
    if (outer.get() != x) ++tally.wrong;
    returned = true;
  } catch (const CancelledError&) {
  }
  bool inner_has = false;
  try {
    if (inner.get() != x) ++tally.wrong;
    inner_has = true;
  } catch (const CancelledError&) {
  }
  bool left = false;
  if (q.qsize() == 1) {
    left = true;
    if (q.get_nowait() != x) ++tally.wrong;
  } else if (q.qsize() != 0) {
    ++tally.wrong;
  }
  if (returned && !inner_has) ++tally.wrong;             // returned something it was not served
  if (!cancels_inner(via) && !inner_has) ++tally.wrong;  // the inner task was cancelled
  if (inner_has && left) ++tally.both;
  if (!inner_has && !left) ++tally.lost;
  tally.returned += returned;
  tally.kept += inner_has && !returned;
  tally.left += left;
}

// ---- a future, awaited through one of the waits --------------------------------------

enum class FVia { get, wait_for, shield };
constexpr FVia kFVias[] = {FVia::get, FVia::wait_for, FVia::shield};

const char* fvia_name(FVia v) {
  switch (v) {
    case FVia::get:
      return "Future::get";
    case FVia::wait_for:
      return "wait_for(future)";
    case FVia::shield:
      return "shield(future)";
  }
  return "?";
}

int await_future(FVia via, Future<int> f) {
  switch (via) {
    case FVia::get:
      return f.get();
    case FVia::wait_for:
      return wait_for(f, 1h);
    case FVia::shield:
      return shield(f);
  }
  return -1;
}

void future_round(FVia via, Order order, test::Racer& racer, int x, Tally& tally) {
  Future<int> f;
  auto outer = spawn([&, f] { return await_future(via, f); });
  until_suspended(outer);
  bool set = false;  // read after cancel_and_serve, which orders it
  racer.cancel_and_serve(order, outer, [&] {
    try {
      f.set_result(x);
      set = true;
    } catch (const InvalidStateError&) {  // the cancelled wait cancelled the future first
    }
  });
  bool returned = false;
  try {
    if (outer.get() != x) ++tally.wrong;
    returned = true;
  } catch (const CancelledError&) {
  }
  bool held = false;
  try {
    if (f.result() != x) ++tally.wrong;
    held = true;
  } catch (const CancelledError&) {
  }
  if (held != set) ++tally.wrong;
  if (returned && !held) ++tally.wrong;
  if (via == FVia::shield && !set) ++tally.wrong;  // shield never cancels the future
  // A value that was set is never lost: it is returned or stays in the future. A set
  // that failed gave nothing away.
  tally.returned += returned;
  tally.kept += held && !returned;
  tally.left += !set;
}

// ---- a generator's consumer, its body parked in q.get() --------------------------------

// next(): the body yields what it gets from q. send(k): the body yields what it gets
// plus the k it was sent, so the test sees the value it sent reached the body.
void generator_round(bool with_send, Order order, test::Racer& racer, int x, Tally& tally) {
  constexpr int kSent = 1'000'000;
  Queue<int> q;
  Task<> body;
  std::atomic<bool> published{false};
  auto consumer = spawn([&]() -> int {
    Generator<int, int> g([&](auto& co) {
      int k = co.yield(-1);
      for (;;) {
        body = current_task();
        // release: publishes `body`; the test reads it after an acquire load.
        published.store(true, std::memory_order_release);
        k = co.yield(q.get() + k);
      }
    });
    if (g.next() != -1) return -2;
    return with_send ? g.send(kSent).value() - kSent : g.next().value();
  });
  while (!published.load(std::memory_order_acquire)) yield();
  until_suspended(body);      // parked in q.get()
  until_suspended(consumer);  // parked in next()/send()
  racer.cancel_and_serve(order, consumer, [&] { q.put_nowait(x); });
  bool returned = false;
  try {
    if (consumer.get() != x) ++tally.wrong;
    returned = true;
  } catch (const CancelledError&) {
  }
  bool left = false;
  if (q.qsize() == 1) {
    left = true;
    if (q.get_nowait() != x) ++tally.wrong;
  } else if (q.qsize() != 0) {
    ++tally.wrong;
  }
  if (returned && left) ++tally.both;
  if (!returned && !left) ++tally.lost;
  tally.returned += returned;
  tally.left += left;
}

}  // namespace

TEST_CASE("a task parked in q.get() is served as its awaiter is cancelled: the item is returned or stays, once",
          "[cancel][serve][task]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(40);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    for (Via via : kVias) {
      for (Order order : test::kOrders) {
        Tally t;
        for (int i = 0; i < rounds; ++i) task_round(via, order, racer, i, t);
        INFO(via_name(via) << ", " << test::order_name(order) << ", " << n << " workers: returned " << t.returned
                           << ", kept by the inner task " << t.kept << ", left queued " << t.left);
        CHECK_TALLY(t, rounds);
      }
    }
  });
}

TEST_CASE("a future is set as its awaiter is cancelled: the value is returned or stays in the future, once",
          "[cancel][serve][future]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(100);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    for (FVia via : kFVias) {
      for (Order order : test::kOrders) {
        Tally t;
        for (int i = 0; i < rounds; ++i) future_round(via, order, racer, i, t);
        INFO(fvia_name(via) << ", " << test::order_name(order) << ", " << n << " workers: returned " << t.returned
                            << ", kept in the future " << t.kept << ", set refused " << t.left);
        CHECK_TALLY(t, rounds);
      }
    }
  });
}

TEST_CASE("a generator's body is served as its consumer is cancelled in next()/send(): returned or left queued",
          "[cancel][serve][generator]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(50);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    for (bool with_send : {false, true}) {
      for (Order order : test::kOrders) {
        Tally t;
        for (int i = 0; i < rounds; ++i) generator_round(with_send, order, racer, i, t);
        INFO((with_send ? "send" : "next") << ", " << test::order_name(order) << ", " << n << " workers: returned "
                                           << t.returned << ", left queued " << t.left);
        CHECK_TALLY(t, rounds);
      }
    }
  });
}

TEST_CASE("JobScheduler::spawn waiting for room gets it as it is cancelled: the job runs iff spawn returned",
          "[cancel][serve][job_scheduler]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(100);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    for (Order order : test::kOrders) {
      int returned = 0, refused = 0, wrong = 0;
      for (int i = 0; i < rounds; ++i) {
        std::atomic<int> ran_pending{0}, ran_new{0};
        Event release;
        {
          JobScheduler s(1, 1);  // one active, one pending
          auto active = s.spawn([&] { release.wait(); });
          auto pending = s.spawn([&] { ran_pending.fetch_add(1, std::memory_order_relaxed); });
          auto spawner = spawn([&] {
            (void)s.spawn([&] { ran_new.fetch_add(1, std::memory_order_relaxed); });
            return true;
          });
          until_suspended(spawner);  // the pending list is full: waits for room
          // The serve: cancelling the pending job takes it off the list, which makes room.
          racer.cancel_and_serve(order, spawner, [&] { (void)pending.cancel(); });
          bool got_room = false;
          try {
            got_room = spawner.get();
          } catch (const CancelledError&) {
          }
          release.set();
          s.wait();
          // relaxed: s.wait() returned after every job ended, which orders their writes.
          if (ran_pending.load(std::memory_order_relaxed) != 0) ++wrong;
          if (ran_new.load(std::memory_order_relaxed) != (got_room ? 1 : 0)) ++wrong;
          returned += got_room;
          refused += !got_room;
        }
      }
      INFO(test::order_name(order) << ", " << n << " workers: spawned " << returned << ", cancelled " << refused);
      CHECK(wrong == 0);
      CHECK(returned + refused == rounds);
    }
  });
}

TEST_CASE("JobScheduler::wait cancelled as its last job ends: returns or raises, the job ran once",
          "[cancel][serve][job_scheduler]") {
  const unsigned n = SPINDLE_WORKERS();
  const int rounds = test::rounds(40);
  test::Checked h(n);
  h.rt.block_on([&] {
    test::Racer racer(n);
    for (Order order : test::kOrders) {
      int wrong = 0;
      for (int i = 0; i < rounds; ++i) {
        std::atomic<int> ran{0};
        std::atomic<bool> started{false};
        Future<> release;
        JobScheduler s(2, 2);
        (void)s.spawn([&] {
          started.store(true, std::memory_order_relaxed);  // relaxed: a flag, publishes nothing
          release.get();
          ran.fetch_add(1, std::memory_order_relaxed);
        });
        while (!started.load(std::memory_order_relaxed)) yield();
        auto waiter = spawn([&] { s.wait(); });
        until_suspended(waiter);
        racer.cancel_and_serve(order, waiter, [&] { release.set_result(); });
        try {
          waiter.get();
        } catch (const CancelledError&) {
        }
        s.wait();
        if (ran.load(std::memory_order_relaxed) != 1) ++wrong;  // relaxed: s.wait() ordered it
      }
      INFO(test::order_name(order) << ", " << n << " workers");
      CHECK(wrong == 0);
    }
  });
}
