// sync/: Queue, PriorityQueue, LifoQueue (asyncio 3.13, shutdown included) and Channel —
// order, bounds, blocking in arrival order, close/shutdown, cancellation that never drops
// or duplicates an item, and use from fibres on several workers and foreign threads.
// Every case runs over 1, 2, 4 and 8 workers.
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <spindle/sync.hpp>

#include "support.hpp"

using namespace spindle;

namespace {

using test::until_suspended;

using Rt = test::QuietRuntime;

}  // namespace

// ---- Queue ------------------------------------------------------------------------------

TEST_CASE("Queue: FIFO order, sizes, and the _nowait variants", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<int> q(3);
    CHECK(q.maxsize() == 3);
    CHECK(q.empty());
    CHECK_FALSE(q.full());
    CHECK_THROWS_AS(q.get_nowait(), QueueEmpty);
    q.put(1);
    q.put_nowait(2);
    q.put(3);
    CHECK(q.qsize() == 3);
    CHECK(q.full());
    CHECK_THROWS_AS(q.put_nowait(4), QueueFull);
    CHECK(q.get() == 1);
    CHECK(q.get_nowait() == 2);
    CHECK(q.get() == 3);
    CHECK(q.empty());

    Queue<std::string> unbounded;  // maxsize 0: never full
    for (int i = 0; i < 1000; ++i) unbounded.put_nowait(std::to_string(i));
    CHECK_FALSE(unbounded.full());
    for (int i = 0; i < 1000; ++i) CHECK(unbounded.get() == std::to_string(i));
  });
}

TEST_CASE("PriorityQueue gives the smallest first; LifoQueue the newest", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    PriorityQueue<std::pair<int, std::string>> pq;
    pq.put({5, "five"});
    pq.put({1, "one"});
    pq.put({3, "three"});
    pq.put({2, "two"});
    CHECK(pq.get().second == "one");
    CHECK(pq.get().second == "two");
    CHECK(pq.get().second == "three");
    CHECK(pq.get().second == "five");

    PriorityQueue<int, std::greater<int>> maxq;  // a custom order: largest first
    for (int v : {4, 9, 1, 7}) maxq.put(v);
    CHECK(maxq.get() == 9);
    CHECK(maxq.get() == 7);

    LifoQueue<int> lq(2);
    lq.put(1);
    lq.put(2);
    CHECK_THROWS_AS(lq.put_nowait(3), QueueFull);
    CHECK(lq.get() == 2);
    lq.put(3);
    CHECK(lq.get() == 3);
    CHECK(lq.get() == 1);
  });
}

TEST_CASE("Queue: move-only items", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<std::unique_ptr<int>> q(1);
    auto consumer = spawn([&] {
      int sum = 0;
      for (int i = 0; i < 50; ++i) sum += *q.get();
      return sum;
    });
    for (int i = 0; i < 50; ++i) q.put(std::make_unique<int>(i));
    CHECK(consumer.get() == 49 * 50 / 2);
  });
}

TEST_CASE("Queue: waiting getters are served in arrival order", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<int> q;
    std::vector<Task<int>> getters;
    for (int i = 0; i < 4; ++i) {
      getters.push_back(spawn([&] { return q.get(); }));
      until_suspended(getters.back());
    }
    for (int i = 0; i < 4; ++i) q.put(i * 10);
    for (int i = 0; i < 4; ++i) CHECK(getters[i].get() == i * 10);
  });
}

TEST_CASE("Queue: waiting putters are admitted in arrival order; put_nowait cannot overtake them", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<int> q(1);
    q.put(0);
    std::vector<Task<>> putters;
    for (int i = 1; i <= 3; ++i) {
      putters.push_back(spawn([&, i] { q.put(i); }));
      until_suspended(putters.back());
    }
    CHECK(q.get() == 0);  // frees the slot: putter 1 moves in at once
    CHECK(q.full());
    CHECK_THROWS_AS(q.put_nowait(99), QueueFull);
    for (int i = 1; i <= 3; ++i) CHECK(q.get() == i);
    for (auto& t : putters) t.get();
    CHECK(q.empty());
  });
}

TEST_CASE("Queue: task_done and join", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<int> q;
    q.join();  // nothing outstanding: returns at once
    CHECK_THROWS_AS(q.task_done(), std::invalid_argument);
    std::atomic<int> processed{0};
    auto worker = spawn([&] {
      for (int i = 0; i < 10; ++i) {
        (void)q.get();
        yield();
        ++processed;
        q.task_done();
      }
    });
    for (int i = 0; i < 10; ++i) q.put(i);
    q.join();
    CHECK(processed == 10);
    worker.get();
    CHECK_THROWS_AS(q.task_done(), std::invalid_argument);
  });
}

TEST_CASE("Queue: shutdown — puts raise, gets drain then raise, waiters are released", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<int> q(2);
    auto getter = spawn([&] { return q.get(); });
    until_suspended(getter);
    q.shutdown();
    CHECK(q.is_shut_down());
    CHECK_THROWS_AS(getter.get(), QueueShutDown);
    CHECK_THROWS_AS(q.put(1), QueueShutDown);
    CHECK_THROWS_AS(q.put_nowait(1), QueueShutDown);

    Queue<int> q2(2);
    q2.put(1);
    q2.put(2);
    int kept = 3;
    auto putter = spawn([&] { q2.put(std::move(kept)); });
    until_suspended(putter);
    q2.shutdown();
    CHECK_THROWS_AS(putter.get(), QueueShutDown);  // not inserted
    CHECK(q2.qsize() == 2);
    CHECK(q2.get() == 1);  // what is left still comes out
    CHECK(q2.get_nowait() == 2);
    CHECK_THROWS_AS(q2.get(), QueueShutDown);
    CHECK_THROWS_AS(q2.get_nowait(), QueueShutDown);
    q2.shutdown();  // idempotent
  });
}

TEST_CASE("Queue: shutdown(immediate) discards the items and releases join", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<std::shared_ptr<int>> q;
    auto token = std::make_shared<int>(7);
    q.put(token);
    q.put(token);
    q.put(token);
    CHECK(q.get() == token);
    q.task_done();
    auto joiner = spawn([&] { q.join(); });
    until_suspended(joiner);
    CHECK_FALSE(joiner.done());
    q.shutdown(true);
    joiner.get();  // the two discarded items count as done
    CHECK(q.empty());
    CHECK(token.use_count() == 1);  // the discarded copies were destroyed
    CHECK_THROWS_AS(q.get(), QueueShutDown);
  });
}

TEST_CASE("Queue: a cancelled put on a full queue inserts nothing", "[sync][queue][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<std::string> q(1);
    q.put("first");
    std::string mine = "cancelled";
    auto p = spawn([&] { q.put(std::move(mine)); });
    until_suspended(p);
    auto p2 = spawn([&] { q.put("second"); });
    until_suspended(p2);
    p.cancel();
    CHECK_THROWS_AS(p.get(), CancelledError);
    CHECK(mine == "cancelled");  // the caller keeps its value
    CHECK(q.get() == "first");
    CHECK(q.get() == "second");  // the next putter was not passed over
    CHECK(q.empty());
    p2.get();
  });
}

TEST_CASE("Queue: a cancelled get leaves no trace; the next item goes to the next getter", "[sync][queue][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Queue<int> q;
    auto a = spawn([&] { return q.get(); });
    until_suspended(a);
    auto b = spawn([&] { return q.get(); });
    until_suspended(b);
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    q.put(42);
    CHECK(b.get() == 42);
    CHECK(q.empty());
  });
}

TEST_CASE("Queue: an item handed to a getter that is then cancelled is delivered, not dropped",
          "[sync][queue][cancel]") {
  Rt r(1);  // the hand-off lands before the getter runs again; then it is cancelled
  r.rt.block_on([] {
    Queue<int> q;
    std::atomic<int> got{-1};
    auto a = spawn([&] {
      got = q.get();
      yield();  // the cancellation is raised here
    });
    until_suspended(a);
    q.put(5);
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    CHECK(got == 5);
    CHECK(q.empty());
  });
}

TEST_CASE("Queue: a foreign thread produces, fibres on every worker consume", "[sync][queue]") {
  Rt r(SPINDLE_WORKERS());
  Queue<int> q(8);
  std::atomic<long> sum{0};
  std::vector<Task<>> consumers;
  for (int k = 0; k < 4; ++k)
    consumers.push_back(r.rt.spawn([&] {
      for (;;) {
        int v;
        try {
          v = q.get();
        } catch (const QueueShutDown&) {
          return;
        }
        sum += v;
        q.task_done();
      }
    }));
  std::thread producer([&] {
    for (int i = 1; i <= 2000; ++i) q.put(i);  // blocks the thread while full
    q.join();                                  // blocks until every item is processed
    q.shutdown();
  });
  producer.join();
  for (auto& t : consumers) t.get();
  CHECK(sum == 2000L * 2001 / 2);
}

// ---- Channel ----------------------------------------------------------------------------

TEST_CASE("Channel: order, try_send / try_recv, size and capacity", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<int> ch(2);
    CHECK(ch.capacity() == 2);
    int out = 0;
    CHECK(ch.try_recv(out) == RecvStatus::empty);
    CHECK_FALSE(ch.try_recv().has_value());
    ch.send(1);
    CHECK(ch.try_send(2) == SendStatus::sent);
    int three = 3;
    CHECK(ch.try_send(std::move(three)) == SendStatus::full);
    CHECK(three == 3);
    CHECK(ch.size() == 2);
    CHECK(ch.recv() == 1);
    CHECK(ch.try_recv(out) == RecvStatus::received);
    CHECK(out == 2);
    CHECK(ch.empty());

    Channel<int> unbounded;
    CHECK(unbounded.capacity() == 0);
  });
}

TEST_CASE("Channel: an unbounded channel grows and keeps order across wrap-around", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<std::string> ch;
    int next_out = 0;
    for (int i = 0; i < 5000; ++i) {
      ch.send(std::to_string(i));
      if (i % 3 == 0) CHECK(*ch.recv() == std::to_string(next_out++));
    }
    CHECK(ch.size() == static_cast<std::size_t>(5000 - next_out));
    while (next_out < 5000) CHECK(*ch.recv() == std::to_string(next_out++));
  });
}

TEST_CASE("Channel: a large bound is honoured exactly as the ring grows towards it", "[sync][channel]") {
  Channel<int> ch(10000);  // more than the ring allocated up front
  for (int i = 0; i < 10000; ++i) REQUIRE(ch.try_send(i) == SendStatus::sent);
  CHECK(ch.try_send(-1) == SendStatus::full);
  CHECK(ch.size() == 10000);
  for (int i = 0; i < 10000; ++i) REQUIRE(ch.try_recv() == i);
  CHECK(ch.empty());
}

TEST_CASE("Channel: a full channel makes senders wait; they are served in arrival order", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<int> ch(1);
    ch.send(0);
    std::vector<Task<>> senders;
    for (int i = 1; i <= 3; ++i) {
      senders.push_back(spawn([&, i] { ch.send(i); }));
      until_suspended(senders.back());
    }
    CHECK(ch.try_send(99) == SendStatus::full);  // cannot overtake the waiting senders
    for (int i = 0; i <= 3; ++i) CHECK(ch.recv() == i);
    for (auto& t : senders) t.get();
    CHECK(ch.empty());
  });
}

TEST_CASE("Channel: receivers waiting on an empty channel are served in arrival order", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<int> ch(4);
    std::vector<Task<std::optional<int>>> rs;
    for (int i = 0; i < 4; ++i) {
      rs.push_back(spawn([&] { return ch.recv(); }));
      until_suspended(rs.back());
    }
    for (int i = 0; i < 4; ++i) ch.send(i);
    for (int i = 0; i < 4; ++i) CHECK(rs[i].get() == i);
  });
}

TEST_CASE("Channel: close lets receivers drain, then ends them; sends fail", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<int> ch(4);
    ch.send(1);
    ch.send(2);
    ch.close();
    CHECK(ch.closed());
    CHECK_THROWS_AS(ch.send(3), ChannelClosed);
    CHECK(ch.try_send(3) == SendStatus::closed);
    std::vector<int> got;
    for (int v : ch) got.push_back(v);
    CHECK(got == std::vector<int>{1, 2});
    CHECK_FALSE(ch.recv().has_value());
    int out;
    CHECK(ch.try_recv(out) == RecvStatus::closed);
    ch.close();  // idempotent
  });
}

TEST_CASE("Channel: close releases waiting receivers (nullopt) and waiting senders (ChannelClosed)",
          "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<int> empty(1);
    auto rcv = spawn([&] { return empty.recv(); });
    until_suspended(rcv);
    empty.close();
    CHECK_FALSE(rcv.get().has_value());

    Channel<int> full(1);
    full.send(1);
    int kept = 2;
    auto snd = spawn([&] { full.send(std::move(kept)); });
    until_suspended(snd);
    full.close();
    CHECK_THROWS_AS(snd.get(), ChannelClosed);
    CHECK(kept == 2);  // not sent
    CHECK(full.recv() == 1);
    CHECK_FALSE(full.recv().has_value());
  });
}

TEST_CASE("Channel: range-for over values from several producers until closed", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<long> ch(16);
    std::vector<Task<>> producers;
    for (long p = 0; p < 4; ++p)
      producers.push_back(spawn([&, p] {
        for (long i = 0; i < 500; ++i) ch.send(p * 1000 + i);
      }));
    auto closer = spawn([&] {
      for (auto& t : producers) t.get();
      ch.close();
    });
    std::vector<long> last(4, -1);
    long n = 0;
    bool in_order = true;
    for (long v : ch) {
      const long p = v / 1000, i = v % 1000;
      in_order = in_order && i == last[p] + 1;  // each producer's values stay in order
      last[p] = i;
      ++n;
    }
    closer.get();
    CHECK(n == 2000);
    CHECK(in_order);
  });
}

TEST_CASE("Channel: a cancelled recv leaves no trace; a cancelled send sends nothing", "[sync][channel][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<int> ch(1);
    auto a = spawn([&] { return ch.recv(); });
    until_suspended(a);
    auto b = spawn([&] { return ch.recv(); });
    until_suspended(b);
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    ch.send(7);
    CHECK(b.get() == 7);

    ch.send(1);
    int mine = 2;
    auto s = spawn([&] { ch.send(std::move(mine)); });
    until_suspended(s);
    auto s2 = spawn([&] { ch.send(3); });
    until_suspended(s2);
    s.cancel();
    CHECK_THROWS_AS(s.get(), CancelledError);
    CHECK(mine == 2);
    CHECK(ch.recv() == 1);
    CHECK(ch.recv() == 3);
    s2.get();
    CHECK(ch.empty());
  });
}

TEST_CASE("Channel: a value handed to a receiver that is then cancelled is delivered", "[sync][channel][cancel]") {
  Rt r(1);
  r.rt.block_on([] {
    Channel<int> ch;
    std::atomic<int> got{-1};
    auto a = spawn([&] {
      got = *ch.recv();
      yield();  // the cancellation is raised here
    });
    until_suspended(a);
    ch.send(9);
    a.cancel();
    CHECK_THROWS_AS(a.get(), CancelledError);
    CHECK(got == 9);
    CHECK(ch.empty());
  });
}

TEST_CASE("Channel: foreign threads send and receive alongside fibres", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  Channel<int> in(4), out(4);
  // fibre: doubles what comes in and passes it on; threads feed and drain.
  auto relay = r.rt.spawn([&] {
    for (int v : in) out.send(v * 2);
    out.close();
  });
  std::thread feeder([&] {
    for (int i = 1; i <= 1000; ++i) in.send(i);
    in.close();
  });
  long sum = 0;
  while (auto v = out.recv()) sum += *v;  // the test thread blocks while out is empty
  feeder.join();
  relay.get();
  CHECK(sum == 2L * 1000 * 1001 / 2);
}

TEST_CASE("Channel: Task::where names the line of the range-for that waits", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<int> ch;
    auto t = spawn([&] {
      int n = 0;
      for (int v : ch) n += v;  // waits here
      return n;
    });
    until_suspended(t);
    const TaskWhere w = t.where();
    CHECK(w.state == TaskState::suspended);
    CHECK(w.file.find("sync_queues.cpp") != std::string::npos);
    ch.send(3);
    ch.close();
    CHECK(t.get() == 3);
  });
}

TEST_CASE("Channel: move-only values", "[sync][channel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Channel<std::unique_ptr<int>> ch(2);
    auto prod = spawn([&] {
      for (int i = 0; i < 100; ++i) ch.send(std::make_unique<int>(i));
      ch.close();
    });
    int sum = 0;
    for (auto& p : ch) sum += *p;
    prod.get();
    CHECK(sum == 99 * 100 / 2);
  });
}

TEST_CASE("Channel: values left in a destroyed channel are destroyed", "[sync][channel]") {
  auto token = std::make_shared<int>(1);
  {
    Channel<std::shared_ptr<int>> ch;
    for (int i = 0; i < 100; ++i) ch.send(token);  // unbounded: a foreign thread never waits
    CHECK(token.use_count() == 101);
  }
  CHECK(token.use_count() == 1);
}

// ---- with the runtime's timeouts --------------------------------------------------------

TEST_CASE("Queue and Channel waits compose with wait_for; a timed-out wait takes nothing", "[sync][timeout]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    using namespace std::chrono_literals;
    Queue<int> q(1);
    CHECK_THROWS_AS(wait_for([&] { return q.get(); }, 5ms), TimeoutError);
    q.put(1);
    CHECK_THROWS_AS(wait_for([&] { q.put(2); }, 5ms), TimeoutError);
    CHECK(q.qsize() == 1);  // the timed-out put inserted nothing
    CHECK(q.get() == 1);
    Channel<int> ch(1);
    CHECK_THROWS_AS(wait_for([&] { return ch.recv(); }, 5ms), TimeoutError);
    ch.send(7);
    CHECK(ch.recv() == 7);  // not taken by the timed-out receiver
  });
}
