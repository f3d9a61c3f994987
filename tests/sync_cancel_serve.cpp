// sync/: a waiter that is served (handed a lock, a permit, a notification, an item, a
// released round) and cancelled "at once" — both orders, before it runs again — for every
// wait list. The rules (docs/architecture.md, Synchronisation):
//   * Lock, Semaphore, BoundedSemaphore, Condition: the cancelled waiter raises
//     CancelledError holding nothing it was handed (Condition: holding its Lock, as
//     always); the lock / permit / notification goes to the next waiter (asyncio's
//     test_cancel_race, test_cancel_release_race, test_acquire_cancel_before_awoken).
//   * Event, Barrier, Queue::join: the cancelled waiter raises; the others are released.
//   * Queue get/put, Channel recv/send: a transfer that happened is kept — the call
//     returns normally (the item it got, or the item it put is in), the cancellation is
//     raised at the next suspension point; a call that raises transferred nothing.
// "One loop" cases run on one worker, so the interleaving is fixed and the cancelled
// waiter is served before it runs again in both orders; the "across loops" cases run many
// rounds over 1, 2, 4 and 8 workers and check only what must hold for any interleaving.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <spindle/sync.hpp>

#include "support.hpp"

using namespace spindle;

namespace {

using test::until_suspended;
using Rt = test::QuietRuntime;

enum class Order { cancel_first, serve_first };

#if defined(SPINDLE_TSAN)
constexpr int kRounds = 40;
#else
constexpr int kRounds = 300;
#endif

// Waits (bounded, by polling with yield) until t is done. False if it never ends: the
// caller then reports a failure and cancels it so that the test itself ends.
template <class T>
bool finishes(const Task<T>& t) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!t.done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    yield();
  }
  return true;
}

// Whether t ended with CancelledError (false: it returned normally). Rethrows anything else.
template <class T>
bool raised_cancelled(Task<T>& t) {
  try {
    t.get();
    return false;
  } catch (const CancelledError&) {
    return true;
  }
}

// Requires t to end; if it does not, cancels it (so the runtime can shut down) and fails.
template <class T>
void require_finishes(Task<T>& t, const char* what) {
  if (finishes(t)) return;
  t.cancel();
  (void)raised_cancelled(t);
  FAIL(what);
}

void cancel_and_serve(Order o, Task<>& victim, auto serve) {
  if (o == Order::cancel_first) {
    victim.cancel();
    serve();
  } else {
    serve();
    victim.cancel();
  }
}

// What a cancelled-or-not waiter saw.
enum : int { kNothing = 0, kGot = 1, kRaisedClean = 2, kRaisedHolding = 3 };

// ---- Lock -------------------------------------------------------------------------------

// A holds nothing after raising; B gets the lock; the lock is free at the end.
void lock_round(Order o, bool one_loop, bool starving) {
  Lock l;
  l.lock();
  std::atomic<int> a_saw{kNothing};
  auto a = spawn([&] {
    try {
      l.lock();
    } catch (const CancelledError&) {
      a_saw = l.held_by_caller() ? kRaisedHolding : kRaisedClean;
      throw;
    }
    a_saw = kGot;
    l.unlock();
  });
  until_suspended(a);
  if (starving) {
    // Make A lose a race after waiting more than the lock's 1 ms starvation threshold:
    // it then queues again at the head in hand-off mode. (The sleep is the threshold
    // itself, not an ordering: the one worker runs A only when we yield below.)
    sleep(std::chrono::milliseconds(3));
    l.unlock();                            // wakes A
    l.lock();                              // and we take the lock back before A runs
    for (int i = 0; i < 20; ++i) yield();  // A runs, loses, queues again (starving)
  }
  std::atomic<bool> b_got{false};
  auto b = spawn([&] {
    std::scoped_lock g(l);
    b_got = true;
  });
  until_suspended(b);
  bool still_locked = false;
  cancel_and_serve(o, a, [&] {
    l.unlock();
    still_locked = l.locked();  // hand-off mode: unlock() passed the lock straight on
  });
  if (starving) CHECK(still_locked);  // the premise: the hand-off path was taken
  require_finishes(b, "the next waiter never got the lock");
  const bool a_raised = raised_cancelled(a);
  CHECK(a_saw != kRaisedHolding);
  if (one_loop) {
    CHECK(a_raised);
    CHECK(a_saw == kRaisedClean);
  } else {
    CHECK(a_saw != kNothing);
  }
  CHECK(b_got);
  CHECK_FALSE(l.locked());
}

// ---- Semaphore --------------------------------------------------------------------------

// asyncio's test_acquire_cancel_before_awoken: A1 and A2 cancelled, one release: C gets
// the permit, D still waits; nothing is left over.
template <class Sem>
void semaphore_round(Order o, bool one_loop) {
  Sem s(1);
  s.acquire();  // the one permit is ours
  std::atomic<int> a_saw[2] = {kNothing, kNothing};
  std::vector<Task<>> as;
  for (int i = 0; i < 2; ++i) {
    as.push_back(spawn([&, i] {
      try {
        s.acquire();
      } catch (const CancelledError&) {
        a_saw[i] = kRaisedClean;
        throw;
      }
      a_saw[i] = kGot;
      s.release();
    }));
    until_suspended(as.back());
  }
  std::atomic<int> c_got{0};
  std::vector<Task<>> cs;
  for (int i = 0; i < 2; ++i) {
    cs.push_back(spawn([&] {
      s.acquire();
      ++c_got;
      s.release();
    }));
    until_suspended(cs.back());
  }
  if (o == Order::cancel_first) {
    as[0].cancel();
    as[1].cancel();
    s.release();
  } else {
    s.release();
    as[0].cancel();
    as[1].cancel();
  }
  for (auto& c : cs) require_finishes(c, "a permit was lost");
  int raised = 0;
  for (auto& a : as) raised += raised_cancelled(a);
  if (one_loop) {
    CHECK(raised == 2);
    CHECK(a_saw[0] == kRaisedClean);
    CHECK(a_saw[1] == kRaisedClean);
  }
  CHECK(c_got == 2);
  CHECK(s.value() == 1);  // exactly the one permit: none kept, none made up
}

}  // namespace

TEST_CASE("Lock, one loop: a waiter cancelled and handed the wake-up raises and holds nothing",
          "[sync][cancel_serve][lock]") {
  Rt r(1);
  r.rt.block_on([] {
    lock_round(Order::cancel_first, true, false);
    lock_round(Order::serve_first, true, false);
  });
}

TEST_CASE("Lock, one loop: a waiter cancelled and handed the lock (starvation mode) passes it on",
          "[sync][cancel_serve][lock]") {
  Rt r(1);
  r.rt.block_on([] {
    lock_round(Order::cancel_first, true, true);
    lock_round(Order::serve_first, true, true);
  });
}

TEST_CASE("Lock, across loops: cancel and unlock at once never keeps or loses the lock", "[sync][cancel_serve][lock]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    for (int i = 0; i < kRounds; ++i) lock_round(i % 2 ? Order::cancel_first : Order::serve_first, false, false);
  });
}

TEST_CASE("Semaphore, one loop: cancelled waiters handed a permit pass it on", "[sync][cancel_serve][semaphore]") {
  Rt r(1);
  r.rt.block_on([] {
    semaphore_round<Semaphore>(Order::cancel_first, true);
    semaphore_round<Semaphore>(Order::serve_first, true);
    semaphore_round<BoundedSemaphore>(Order::cancel_first, true);
    semaphore_round<BoundedSemaphore>(Order::serve_first, true);
  });
}

TEST_CASE("Semaphore, across loops: cancel and release at once never keeps or loses a permit",
          "[sync][cancel_serve][semaphore]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    for (int i = 0; i < kRounds; ++i) {
      const Order o = i % 2 ? Order::cancel_first : Order::serve_first;
      if (i % 4 < 2) {
        semaphore_round<Semaphore>(o, false);
      } else {
        semaphore_round<BoundedSemaphore>(o, false);
      }
    }
  });
}

// ---- Condition --------------------------------------------------------------------------

namespace {

// A and B wait; one notify and A's cancellation land at once. A raises holding the Lock
// (Condition's rule) and the one notification reaches B — unless A was woken normally
// first (only across loops), in which case B needs a notify of its own.
void condition_round(Order o, bool one_loop) {
  Lock l;
  Condition c(l);
  std::atomic<int> a_saw{kNothing};
  auto a = spawn([&] {
    std::scoped_lock g(l);
    try {
      c.wait();
    } catch (const CancelledError&) {
      a_saw = l.held_by_caller() ? kRaisedHolding : kRaisedClean;  // holding: the rule here
      throw;
    }
    a_saw = kGot;
  });
  until_suspended(a);
  std::atomic<bool> b_woke{false};
  auto b = spawn([&] {
    std::scoped_lock g(l);
    c.wait();
    b_woke = true;
  });
  until_suspended(b);
  {
    std::scoped_lock g(l);
    cancel_and_serve(o, a, [&] { c.notify(1); });
  }
  require_finishes(a, "the cancelled waiter never ended");
  const bool a_raised = raised_cancelled(a);
  if (one_loop) CHECK(a_raised);
  if (a_raised) {
    CHECK(a_saw == kRaisedHolding);
    require_finishes(b, "the notification given to the cancelled waiter was lost");
  } else {
    CHECK(a_saw == kGot);
    {
      std::scoped_lock g(l);
      c.notify(1);
    }
    require_finishes(b, "the second notification was lost");
  }
  b.get();
  CHECK(b_woke);
  CHECK_FALSE(l.locked());
}

}  // namespace

TEST_CASE("Condition, one loop: a notified waiter that is cancelled raises and passes the notification on",
          "[sync][cancel_serve][condition]") {
  Rt r(1);
  r.rt.block_on([] {
    condition_round(Order::cancel_first, true);
    condition_round(Order::serve_first, true);
  });
}

TEST_CASE("Condition, one loop: a waiter cancelled while it re-acquires the Lock raises holding it",
          "[sync][cancel_serve][condition]") {
  Rt r(1);
  r.rt.block_on([] {
    Lock l;
    Condition c(l);
    std::atomic<int> a_saw{kNothing};
    auto a = spawn([&] {
      std::scoped_lock g(l);
      try {
        c.wait();
      } catch (const CancelledError&) {
        a_saw = l.held_by_caller() ? kRaisedHolding : kRaisedClean;
        throw;
      }
      a_saw = kGot;
    });
    until_suspended(a);
    std::atomic<bool> c_woke{false};
    auto other = spawn([&] {
      std::scoped_lock g(l);
      c.wait();
      c_woke = true;
    });
    until_suspended(other);
    l.lock();
    c.notify(1);                           // A is notified and now has to re-acquire the Lock, which we hold
    for (int i = 0; i < 10; ++i) yield();  // A runs and queues on the Lock
    std::atomic<bool> b_got{false};
    auto b = spawn([&] {
      std::scoped_lock g(l);
      b_got = true;
    });
    until_suspended(b);
    a.cancel();
    l.unlock();
    require_finishes(a, "the cancelled waiter never re-acquired the Lock");
    CHECK(raised_cancelled(a));
    CHECK(a_saw == kRaisedHolding);
    require_finishes(b, "the Lock was kept by the cancelled waiter");
    CHECK(b_got);
    // The notification A consumed went on to the other waiter.
    require_finishes(other, "the notification was lost");
    CHECK(c_woke);
    CHECK_FALSE(l.locked());
  });
}

TEST_CASE("Condition, across loops: cancel and notify at once never loses the notification",
          "[sync][cancel_serve][condition]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    for (int i = 0; i < kRounds; ++i) condition_round(i % 2 ? Order::cancel_first : Order::serve_first, false);
  });
}

// ---- Event, Barrier, Queue::join ---------------------------------------------------------

namespace {

void event_round(Order o, bool one_loop) {
  Event ev;
  auto a = spawn([&] { ev.wait(); });
  until_suspended(a);
  auto b = spawn([&] { ev.wait(); });
  until_suspended(b);
  cancel_and_serve(o, a, [&] { ev.set(); });
  require_finishes(b, "set() did not release the other waiter");
  b.get();
  const bool a_raised = raised_cancelled(a);
  if (one_loop) CHECK(a_raised);
}

void barrier_round(Order o, bool one_loop) {
  Barrier bar(3);
  std::atomic<long> a_index{-1}, b_index{-1}, h_index{-1};
  auto a = spawn([&] { a_index = long(bar.wait()); });
  until_suspended(a);
  auto b = spawn([&] { b_index = long(bar.wait()); });
  until_suspended(b);
  // Across loops A may see its cancellation and leave before we arrive: the round then
  // needs one more party, which this helper supplies (only then: A is done and two
  // parties — B and we — are waiting).
  std::atomic<bool> mine_done{false};
  auto helper = spawn([&] {
    while (!mine_done) {
      if (a.done() && bar.n_waiting() == 2) {
        h_index = long(bar.wait());
        return;
      }
      yield();
    }
  });
  long mine = -1;
  cancel_and_serve(o, a, [&] { mine = long(bar.wait()); });
  mine_done = true;
  require_finishes(b, "the round did not release the other party");
  require_finishes(helper, "the helper party never ended");
  b.get();
  helper.get();
  const bool a_raised = raised_cancelled(a);
  if (one_loop) {
    CHECK(a_raised);
    CHECK(mine == 2);  // we completed the round A was still part of
    CHECK(h_index == -1);
  }
  std::vector<long> idx{mine, b_index.load()};
  if (!a_raised) idx.push_back(a_index);
  if (h_index >= 0) idx.push_back(h_index);
  // One round of three, each index at most once; only the index of a cancelled A that
  // was released with the round goes unreported.
  std::sort(idx.begin(), idx.end());
  CHECK(std::adjacent_find(idx.begin(), idx.end()) == idx.end());
  CHECK(idx.front() >= 0);
  CHECK(idx.back() <= 2);
  CHECK(idx.size() == (a_raised && h_index < 0 ? 2u : 3u));
  CHECK(bar.n_waiting() == 0);
  CHECK_FALSE(bar.broken());
}

void join_round(Order o, bool one_loop) {
  Queue<int> q;
  q.put(1);
  auto a = spawn([&] { q.join(); });
  until_suspended(a);
  auto b = spawn([&] { q.join(); });
  until_suspended(b);
  CHECK(q.get() == 1);
  cancel_and_serve(o, a, [&] { q.task_done(); });
  require_finishes(b, "task_done() did not release the other joiner");
  b.get();
  const bool a_raised = raised_cancelled(a);
  if (one_loop) CHECK(a_raised);
}

}  // namespace

TEST_CASE("Event, Barrier, Queue::join, one loop: a released waiter that is cancelled raises; the others go on",
          "[sync][cancel_serve][event][barrier][queue]") {
  Rt r(1);
  r.rt.block_on([] {
    for (Order o : {Order::cancel_first, Order::serve_first}) {
      event_round(o, true);
      barrier_round(o, true);
      join_round(o, true);
    }
  });
}

TEST_CASE("Event, Barrier, Queue::join, across loops: cancel and release at once",
          "[sync][cancel_serve][event][barrier][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    for (int i = 0; i < kRounds; ++i) {
      const Order o = i % 2 ? Order::cancel_first : Order::serve_first;
      event_round(o, false);
      barrier_round(o, false);
      join_round(o, false);
    }
  });
}

// ---- Queue / Channel: items -------------------------------------------------------------

namespace {

// Getter A (then cancelled) and getter B wait; items 1 and 2 are put. Every item reaches
// exactly one getter; A either raised having got nothing, or returned its item.
template <class Q>
void queue_get_round(Order o, bool one_loop) {
  Q q;
  std::atomic<int> a_got{0}, b_got{0};
  std::atomic<bool> a_raised_in_get{false};
  auto a = spawn([&] {
    try {
      a_got = q.get();
    } catch (const CancelledError&) {
      a_raised_in_get = true;
      throw;
    }
  });
  until_suspended(a);
  auto b = spawn([&] { b_got = q.get(); });
  until_suspended(b);
  cancel_and_serve(o, a, [&] { q.put(1); });
  q.put(2);
  require_finishes(b, "the second getter never got an item");
  b.get();
  (void)raised_cancelled(a);
  std::vector<int> seen;
  if (a_got) seen.push_back(a_got);
  if (b_got) seen.push_back(b_got);
  while (!q.empty()) seen.push_back(q.get_nowait());
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<int>{1, 2});  // none lost, none twice
  CHECK(a_raised_in_get == (a_got == 0));
  if (one_loop) {
    // Served before it ran again: the transfer stands (returned, not raised in get()).
    CHECK(a_got == 1);
    CHECK(b_got == 2);
  }
}

// Putter A (then cancelled) and putter B wait on a full queue of one; gets make room. A's
// item is in the queue exactly when A's put() returned normally.
template <class Q>
void queue_put_round(Order o, bool one_loop) {
  Q q(1);
  q.put(100);
  std::atomic<bool> a_put{false}, a_raised_in_put{false};
  auto a = spawn([&] {
    try {
      q.put(1);
    } catch (const CancelledError&) {
      a_raised_in_put = true;
      throw;
    }
    a_put = true;
  });
  until_suspended(a);
  auto b = spawn([&] { q.put(2); });
  until_suspended(b);
  std::vector<int> seen;
  cancel_and_serve(o, a, [&] { seen.push_back(q.get()); });
  while (!b.done() || !q.empty()) {
    int v;
    try {
      v = q.get_nowait();
    } catch (const QueueEmpty&) {
      yield();
      continue;
    }
    seen.push_back(v);
  }
  b.get();
  (void)raised_cancelled(a);
  CHECK(a_put != a_raised_in_put);
  const bool a_in = std::count(seen.begin(), seen.end(), 1) == 1;
  CHECK(a_in == a_put.load());
  CHECK(std::count(seen.begin(), seen.end(), 100) == 1);
  CHECK(std::count(seen.begin(), seen.end(), 2) == 1);
  CHECK(seen.size() == (a_in ? 3u : 2u));
  if (one_loop) CHECK(a_put);  // moved in before A ran again: the put stands
}

void channel_recv_round(Order o, bool one_loop) {
  Channel<int> ch;
  std::atomic<int> a_got{0}, b_got{0};
  std::atomic<bool> a_raised_in_recv{false};
  auto a = spawn([&] {
    try {
      a_got = ch.recv().value_or(-1);
    } catch (const CancelledError&) {
      a_raised_in_recv = true;
      throw;
    }
  });
  until_suspended(a);
  auto b = spawn([&] { b_got = ch.recv().value_or(-1); });
  until_suspended(b);
  cancel_and_serve(o, a, [&] { ch.send(1); });
  ch.send(2);
  require_finishes(b, "the second receiver never got a value");
  b.get();
  (void)raised_cancelled(a);
  std::vector<int> seen;
  if (a_got) seen.push_back(a_got);
  if (b_got) seen.push_back(b_got);
  while (auto v = ch.try_recv()) seen.push_back(*v);
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<int>{1, 2});
  CHECK(a_raised_in_recv == (a_got == 0));
  if (one_loop) {
    CHECK(a_got == 1);
    CHECK(b_got == 2);
  }
}

void channel_send_round(Order o, bool one_loop) {
  Channel<int> ch(1);
  ch.send(100);
  std::atomic<bool> a_sent{false}, a_raised_in_send{false};
  auto a = spawn([&] {
    try {
      ch.send(1);
    } catch (const CancelledError&) {
      a_raised_in_send = true;
      throw;
    }
    a_sent = true;
  });
  until_suspended(a);
  auto b = spawn([&] { ch.send(2); });
  until_suspended(b);
  std::vector<int> seen;
  cancel_and_serve(o, a, [&] { seen.push_back(*ch.recv()); });
  while (!b.done() || !ch.empty()) {
    if (auto v = ch.try_recv()) {
      seen.push_back(*v);
    } else {
      yield();
    }
  }
  b.get();
  (void)raised_cancelled(a);
  CHECK(a_sent != a_raised_in_send);
  const bool a_in = std::count(seen.begin(), seen.end(), 1) == 1;
  CHECK(a_in == a_sent.load());
  CHECK(std::count(seen.begin(), seen.end(), 100) == 1);
  CHECK(std::count(seen.begin(), seen.end(), 2) == 1);
  CHECK(seen.size() == (a_in ? 3u : 2u));
  if (one_loop) CHECK(a_sent);
}

void all_item_rounds(Order o, bool one_loop) {
  queue_get_round<Queue<int>>(o, one_loop);
  queue_get_round<LifoQueue<int>>(o, one_loop);
  queue_get_round<PriorityQueue<int>>(o, one_loop);
  queue_put_round<Queue<int>>(o, one_loop);
  queue_put_round<LifoQueue<int>>(o, one_loop);
  queue_put_round<PriorityQueue<int>>(o, one_loop);
  channel_recv_round(o, one_loop);
  channel_send_round(o, one_loop);
}

}  // namespace

TEST_CASE("Queue and Channel, one loop: a transfer to a cancelled waiter stands; nothing is lost",
          "[sync][cancel_serve][queue][channel]") {
  Rt r(1);
  r.rt.block_on([] {
    all_item_rounds(Order::cancel_first, true);
    all_item_rounds(Order::serve_first, true);
  });
}

TEST_CASE("Queue and Channel, across loops: cancel and serve at once loses or doubles no item",
          "[sync][cancel_serve][queue][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    for (int i = 0; i < kRounds; ++i) all_item_rounds(i % 2 ? Order::cancel_first : Order::serve_first, false);
  });
}
