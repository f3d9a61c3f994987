// sync/ under load, meant for TSan and ASan builds too: many producers and consumers
// (fibres on every worker and foreign threads) over every queue and the Channel with
// every item counted exactly once; a Lock guarding a plain counter; and cancellation
// storms against each primitive's waits, with the invariants checked afterwards.
// Sizes are bounded so that each case takes well under a second without sanitizers.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <spindle/sync.hpp>

#include "../support.hpp"

using namespace spindle;

namespace {

// A small deterministic generator (xorshift64*), one per task.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

// Each item id is recorded once per appearance; exactly_once() checks the totals.
struct Ledger {
  explicit Ledger(std::size_t n) : seen(n) {}
  std::vector<std::atomic<uint32_t>> seen;
  void note(std::size_t id) { seen.at(id).fetch_add(1, std::memory_order_relaxed); }
  // Items in [0, n) marked in `expected` must be seen once, the others never.
  std::size_t mismatches(const std::vector<uint8_t>& expected) const {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < seen.size(); ++i) bad += seen[i].load() != expected[i];
    return bad;
  }
};

// Cancels random tasks of `victims` until `stop`; `cancels` counts requests delivered.
Task<> spawn_canceller(std::vector<Task<>>& victims, std::atomic<bool>& stop, uint64_t seed,
                       std::atomic<long>& cancels) {
  return spawn([&victims, &stop, &cancels, seed] {
    // A task cancelled before it starts never runs its body; wait until every victim
    // has started so that each one's own loop sees (and survives) its cancellations.
    for (auto& v : victims)
      while (!test::has_started(v)) yield();
    Rng rng(seed);
    while (!stop.load()) {
      for (uint64_t k = 1 + rng.below(3); k > 0; --k) {
        Task<>& v = victims[rng.below(victims.size())];
        if (v.cancel("storm")) ++cancels;
      }
      yield();
    }
  });
}

using Rt = test::QuietRuntime;

// N producers x M consumers over a queue type; producers include a foreign thread, so do
// consumers. Every item must come out exactly once.
template <class Q>
void queue_exactly_once(unsigned workers) {
  constexpr int kFibreProducers = 4, kItemsEach = 3000;
  constexpr int kProducers = kFibreProducers + 1;
  constexpr std::size_t kItems = std::size_t(kProducers) * kItemsEach;
  Rt r(workers);
  Q q(16);
  Ledger ledger(kItems);
  std::vector<Task<>> tasks;
  auto produce = [&](int p) {
    for (int i = 0; i < kItemsEach; ++i) q.put(p * kItemsEach + i);
  };
  auto consume = [&] {
    for (;;) {
      try {
        ledger.note(std::size_t(q.get()));
      } catch (const QueueShutDown&) {
        return;
      }
    }
  };
  for (int p = 0; p < kFibreProducers; ++p) tasks.push_back(r.rt.spawn(produce, p));
  std::vector<Task<>> consumers;
  for (int c = 0; c < 3; ++c) consumers.push_back(r.rt.spawn(consume));
  std::thread thread_consumer(consume);
  std::thread thread_producer(produce, kFibreProducers);
  thread_producer.join();
  for (auto& t : tasks) t.get();
  q.shutdown();  // the consumers drain what is left, then stop
  thread_consumer.join();
  for (auto& t : consumers) t.get();
  CHECK(ledger.mismatches(std::vector<uint8_t>(kItems, 1)) == 0);
}

}  // namespace

// ---- exactly once ---------------------------------------------------------------------

TEST_CASE("stress: Queue, PriorityQueue and LifoQueue deliver every item exactly once", "[sync][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  queue_exactly_once<Queue<int>>(n);
  queue_exactly_once<PriorityQueue<int>>(n);
  queue_exactly_once<LifoQueue<int>>(n);
}

TEST_CASE("stress: Channel (bounded and unbounded) delivers every item exactly once", "[sync][stress]") {
  const unsigned n = SPINDLE_WORKERS();
  for (std::size_t cap : {std::size_t(1), std::size_t(8), std::size_t(0)}) {
    constexpr int kFibreProducers = 4, kItemsEach = 3000;
    constexpr std::size_t kItems = std::size_t(kFibreProducers + 1) * kItemsEach;
    Rt r(n);
    Channel<int> ch(cap);
    Ledger ledger(kItems);
    auto produce = [&](int p) {
      for (int i = 0; i < kItemsEach; ++i) ch.send(p * kItemsEach + i);
    };
    auto consume = [&] {
      for (int v : ch) ledger.note(std::size_t(v));
    };
    std::vector<Task<>> producers, consumers;
    for (int p = 0; p < kFibreProducers; ++p) producers.push_back(r.rt.spawn(produce, p));
    for (int c = 0; c < 3; ++c) consumers.push_back(r.rt.spawn(consume));
    std::thread thread_consumer(consume);
    std::thread thread_producer(produce, kFibreProducers);
    thread_producer.join();
    for (auto& t : producers) t.get();
    ch.close();
    thread_consumer.join();
    for (auto& t : consumers) t.get();
    CHECK(ledger.mismatches(std::vector<uint8_t>(kItems, 1)) == 0);
    CHECK(ch.empty());
  }
}

TEST_CASE("stress: a Lock guards a plain counter across workers and threads", "[sync][stress]") {
  Rt r(SPINDLE_WORKERS());
  Lock l;
  long counter = 0;  // deliberately not atomic: TSan reports any unguarded access
  constexpr int kTasks = 8, kThreads = 2, kEach = 3000;
  std::vector<Task<>> ts;
  for (int k = 0; k < kTasks; ++k)
    ts.push_back(r.rt.spawn([&, k] {
      for (int i = 0; i < kEach; ++i) {
        std::scoped_lock g(l);
        ++counter;
        if ((i + k) % 97 == 0) yield();  // now and then suspend while holding it
      }
    }));
  std::vector<std::thread> ths;
  for (int k = 0; k < kThreads; ++k)
    ths.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        std::scoped_lock g(l);
        ++counter;
      }
    });
  for (auto& t : ths) t.join();
  for (auto& t : ts) t.get();
  CHECK(counter == long(kTasks + kThreads) * kEach);
  CHECK_FALSE(l.locked());
}

// ---- cancellation storms ---------------------------------------------------------------

TEST_CASE("storm: Lock waiters cancelled at random never hold it, never lose a turn", "[sync][stress][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock l;
    long counter = 0;  // guarded by l
    std::atomic<long> acquired{0}, cancelled{0}, cancels{0};
    std::atomic<bool> stop{false};
    std::atomic<int> misuse{0};
    std::vector<Task<>> ts;
    for (int k = 0; k < 8; ++k)
      ts.push_back(spawn([&, k] {
        Rng rng(k + 1);
        for (int i = 0; i < 400; ++i) {
          try {
            l.lock();
          } catch (const CancelledError&) {
            if (l.held_by_caller()) ++misuse;  // a cancelled lock() must not hold it
            ++cancelled;
            continue;
          }
          ++counter;
          ++acquired;
          const bool suspend = rng.below(8) == 0;
          try {
            if (suspend) yield();  // a pending cancellation may land here
          } catch (const CancelledError&) {
            ++cancelled;
          }
          l.unlock();
        }
      }));
    auto canceller = spawn_canceller(ts, stop, 7, cancels);
    for (auto& t : ts) t.get();
    stop = true;
    canceller.get();
    CHECK(misuse == 0);
    CHECK(counter == acquired);
    CHECK(acquired + cancelled >= 8 * 400);
    CHECK_FALSE(l.locked());
    CHECK(l.try_lock());  // free, and nobody is stuck in its queue
    l.unlock();
  });
}

TEST_CASE("storm: Semaphore waiters cancelled at random; the count comes back whole", "[sync][stress][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    constexpr int kPermits = 3;
    BoundedSemaphore s(kPermits);
    std::atomic<int> inside{0}, peak{0};
    std::atomic<long> cancels{0};
    std::atomic<bool> stop{false};
    std::vector<Task<>> ts;
    for (int k = 0; k < 10; ++k)
      ts.push_back(spawn([&] {
        for (int i = 0; i < 300; ++i) {
          try {
            auto p = s.permit();
            const int now = ++inside;
            int seen = peak.load();
            while (now > seen && !peak.compare_exchange_weak(seen, now)) {
            }
            try {
              yield();
            } catch (const CancelledError&) {
            }
            --inside;
          } catch (const CancelledError&) {
          }
        }
      }));
    auto canceller = spawn_canceller(ts, stop, 11, cancels);
    for (auto& t : ts) t.get();
    stop = true;
    canceller.get();
    CHECK(peak <= kPermits);
    CHECK(s.value() == kPermits);  // no permit lost, none made up (it is bounded)
  });
}

TEST_CASE("storm: Event waiters cancelled at random each end exactly one way", "[sync][stress][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Rng rng(3);
    for (int round = 0; round < 40; ++round) {
      Event ev;
      std::atomic<int> released{0}, cancelled{0};
      std::vector<Task<>> ts;
      for (int k = 0; k < 12; ++k)
        ts.push_back(spawn([&] {
          try {
            ev.wait();
            ++released;
          } catch (const CancelledError&) {
            ++cancelled;
          }
        }));
      for (int k = 0; k < 4; ++k) ts[rng.below(ts.size())].cancel();
      if (rng.below(2)) yield();
      ev.set();
      for (int k = 0; k < 2; ++k) ts[rng.below(ts.size())].cancel();
      for (auto& t : ts) {  // every waiter ends: none is stranded
        try {
          t.get();
        } catch (const CancelledError&) {
          ++cancelled;  // cancelled before it started: it never waited
        }
      }
      CHECK(released + cancelled == 12);
    }
  });
}

TEST_CASE("storm: Condition waiters cancelled at random; every item is consumed once", "[sync][stress][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    Lock lk;
    Condition cv(lk);
    long available = 0;  // guarded by lk
    std::atomic<long> consumed{0}, cancels{0};
    std::atomic<int> not_reacquired{0};
    std::atomic<bool> stop{false}, done{false};
    constexpr long kItems = 3000;
    std::vector<Task<>> consumers;
    for (int k = 0; k < 6; ++k)
      consumers.push_back(spawn([&] {
        for (;;) {
          std::unique_lock g(lk, std::defer_lock);
          try {
            g.lock();
          } catch (const CancelledError&) {
            continue;  // cancelled while waiting for the lock: not held
          }
          try {
            cv.wait([&] { return available > 0 || done.load(); });
          } catch (const CancelledError&) {
            if (!lk.held_by_caller()) ++not_reacquired;  // wait() re-acquires before raising
            continue;
          }
          if (available == 0) return;
          --available;
          ++consumed;
        }
      }));
    auto canceller = spawn_canceller(consumers, stop, 5, cancels);
    for (long i = 0; i < kItems; ++i) {
      std::scoped_lock g(lk);
      ++available;
      cv.notify();
      if (i % 16 == 0) yield();
    }
    stop = true;
    canceller.get();
    // Let the consumers drain what is left, then tell them to stop.
    for (;;) {
      {
        std::scoped_lock g(lk);
        if (available == 0) {
          done = true;
          cv.notify_all();
          break;
        }
        cv.notify_all();
      }
      yield();
    }
    for (auto& t : consumers) t.get();
    CHECK(consumed == kItems);
    CHECK(not_reacquired == 0);
    CHECK_FALSE(lk.locked());
  });
}

namespace {
// Producers and consumers over a bounded queue or channel, both cancelled at random.
// `put` returns normally only if the item went in; `get` returns an item or throws.
// Every item that went in must come out exactly once; a cancelled put inserts nothing.
template <class Put, class Get, class Drain>
void item_storm(unsigned workers, Put put, Get get, Drain drain_rest) {
  Rt r(workers);
  r.rt.block_on([&] {
    constexpr int kProducers = 4, kEach = 500;
    constexpr std::size_t kIds = std::size_t(kProducers) * kEach;
    Ledger out(kIds);
    std::vector<uint8_t> went_in(kIds, 0);  // each slot written by its producer only
    std::atomic<long> cancels{0};
    std::atomic<bool> stop{false}, producers_done{false};
    std::vector<Task<>> victims;
    for (int p = 0; p < kProducers; ++p)
      victims.push_back(spawn([&, p] {
        for (int i = 0; i < kEach; ++i) {
          const int id = p * kEach + i;
          try {
            put(id);
            went_in[std::size_t(id)] = 1;
          } catch (const CancelledError&) {
            // not inserted (or, if it was, put() returned normally first)
          }
        }
      }));
    for (int c = 0; c < 3; ++c)
      victims.push_back(spawn([&] {
        while (!producers_done.load()) {
          try {
            if (auto v = get()) out.note(std::size_t(*v));
          } catch (const CancelledError&) {
          }
        }
      }));
    auto canceller = spawn_canceller(victims, stop, 13, cancels);
    for (int p = 0; p < kProducers; ++p) {
      try {
        victims[std::size_t(p)].get();
      } catch (const CancelledError&) {
        FAIL("a producer ended cancelled: its loop catches every cancellation");
      }
    }
    stop = true;
    canceller.get();
    producers_done = true;
    drain_rest(out);  // wakes consumers stuck in get, then takes what is left
    for (std::size_t c = kProducers; c < victims.size(); ++c) {
      try {
        victims[c].get();
      } catch (const CancelledError&) {
      }
    }
    drain_rest(out);
    CHECK(out.mismatches(went_in) == 0);
  });
}
}  // namespace

TEST_CASE("storm: Queue puts and gets cancelled at random never drop or duplicate an item", "[sync][stress][cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  auto q = std::make_shared<Queue<int>>(4);
  item_storm(
      n, [q](int id) { q->put(id); },
      [q]() -> std::optional<int> {
        try {
          return q->get();
        } catch (const QueueShutDown&) {
          return std::nullopt;
        }
      },
      [q](Ledger& out) {
        q->shutdown();  // waiting getters leave with QueueShutDown; items stay
        for (;;) {
          try {
            out.note(std::size_t(q->get_nowait()));
          } catch (const QueueShutDown&) {
            return;
          }
        }
      });
}

TEST_CASE("storm: Channel sends and recvs cancelled at random never drop or duplicate an item",
          "[sync][stress][cancel]") {
  const unsigned n = SPINDLE_WORKERS();
  auto ch = std::make_shared<Channel<int>>(4);
  item_storm(
      n, [ch](int id) { ch->send(id); }, [ch]() { return ch->recv(); },
      [ch](Ledger& out) {
        ch->close();  // waiting receivers leave with nullopt once it is drained
        while (auto v = ch->try_recv()) out.note(std::size_t(*v));
      });
}

TEST_CASE("storm: Barrier waiters cancelled at random; it still works afterwards", "[sync][stress][cancel]") {
  Rt r(SPINDLE_WORKERS());
  r.rt.block_on([] {
    constexpr std::size_t kParties = 4;
    Barrier b(kParties);
    std::atomic<long> passed{0}, cancelled{0}, broken{0}, cancels{0}, bad_index{0};
    std::atomic<bool> stop{false};
    std::vector<Task<>> ts;
    // 8 tasks loop over a 4-party barrier until told to stop: however many waits are
    // cancelled, enough tasks keep arriving for rounds to complete.
    for (int k = 0; k < 8; ++k)
      ts.push_back(spawn([&] {
        while (!stop.load()) {
          try {
            if (b.wait() >= kParties) ++bad_index;
            ++passed;
          } catch (const CancelledError&) {
            ++cancelled;
          } catch (const BrokenBarrierError&) {
            ++broken;
          }
        }
      }));
    auto canceller = spawn_canceller(ts, stop, 17, cancels);
    while (passed.load() < 400) yield();
    stop = true;
    canceller.get();
    b.abort();  // releases a partial round; every later wait breaks at once
    for (auto& t : ts) {
      try {
        t.get();
      } catch (const CancelledError&) {
      }
    }
    CHECK(bad_index == 0);
    CHECK(b.broken());
    // Repaired, it runs a clean round.
    b.reset();
    std::vector<Task<std::size_t>> round;
    for (std::size_t k = 0; k < kParties; ++k) round.push_back(spawn([&] { return b.wait(); }));
    std::size_t sum = 0;
    for (auto& t : round) sum += t.get();
    CHECK(sum == 0 + 1 + 2 + 3);
  });
}
