// Soak: for a bounded time, many tasks over 1, 2, 4 and 8 workers mix everything spindle
// offers — spawn, get, cancel, sleep, wait_for, gather, TaskGroup, Lock, Queue, Channel,
// call_later, done callbacks, to_thread and loopback TCP — while an oracle counts what
// must happen. At the end of each run:
//
//   * every task ended: each task's callable was destroyed (it ran, or its task was
//     dropped unstarted), every body that started ended, and once idle the runtime
//     lists no task and counts none live, with no fibre stack in use (Runtime::metrics);
//   * every item sent through the Queue and through the Channel was received exactly
//     once (count and a hash sum of the item ids on both sides);
//   * every exception a task threw was retrieved (get, gather, TaskGroup) or reported as
//     never retrieved, exactly once; no other report was made;
//   * every timer callback not cancelled, every done callback and every to_thread job ran,
//     exactly once; a Lock kept a plain counter exact;
//   * no fd is left open; LeakSanitizer (the ASan build) finds no leak at exit.
//
// SOAK_SECONDS is the length of the whole run, split over the four worker counts
// (default 3 s; 2 s under ASan, 1.5 s under TSan). SOAK_SEED seeds every actor's choices
// (default fixed); it is printed first, so a failing run can be replayed with the same
// choices (the interleaving itself is the machine's). A watchdog dumps every live task
// and aborts if a run does not end in time. `make soak SECONDS=N` runs it long.
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <spindle/spindle.hpp>

#include "../io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

#if defined(SPINDLE_TSAN)
constexpr double kDefaultSeconds = 1.5;
#elif defined(SPINDLE_ASAN)
constexpr double kDefaultSeconds = 2.0;
#else
constexpr double kDefaultSeconds = 3.0;
#endif
// Actors run the random operations; under TSan (every fibre has a shadow thread state)
// fewer of them.
constexpr unsigned kActors = test::kScaleDown > 1 ? 6 : 12;
constexpr uint64_t kDefaultSeed = 0x5EED'2024'0607ull;

// splitmix64's finaliser: a bijection on 64 bits, used to hash item ids and values.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// xorshift64*, one per actor.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(mix(seed) | 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  uint64_t below(uint64_t n) { return next() % n; }
  bool chance(unsigned percent) { return below(100) < percent; }
  std::chrono::microseconds us(uint64_t max) { return std::chrono::microseconds(below(max + 1)); }
};

double soak_seconds() {
  const char* s = std::getenv("SOAK_SECONDS");
  if (!s || !*s) return kDefaultSeconds;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (end == s || *end || !(v > 0) || v > 1e6)
    throw std::invalid_argument("SOAK_SECONDS must be a positive number of seconds, not '" + std::string(s) + "'");
  return v;
}

uint64_t soak_seed() {
  const char* s = std::getenv("SOAK_SEED");
  if (!s || !*s) return kDefaultSeed;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 0);
  if (end == s || *end) throw std::invalid_argument("SOAK_SEED must be an integer, not '" + std::string(s) + "'");
  return v;
}

// The exception the soak's tasks throw on purpose.
struct Boom : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum Op : unsigned {
  kSpawnGet,
  kCancel,
  kSleep,
  kWaitFor,
  kGather,
  kGroup,
  kLock,
  kQueuePut,
  kQueueChild,
  kChannelSend,
  kChannelChild,
  kToThread,
  kTcp,
  kTcpCancel,
  kDropped,
  kTimer,
  kDoneCallback,
  kNested,
  kHandoff,
  kOps
};
constexpr const char* kOpNames[kOps] = {"spawn_get",  "cancel",        "sleep",     "wait_for",    "gather",
                                        "task_group", "lock",          "queue_put", "queue_child", "chan_send",
                                        "chan_child", "to_thread",     "tcp",       "tcp_cancel",  "dropped",
                                        "call_later", "done_callback", "nested",    "handoff"};
// How often each operation is picked (out of the sum).
constexpr unsigned kWeights[kOps] = {10, 8, 4, 5, 5, 5, 6, 8, 4, 8, 4, 4, 3, 2, 2, 4, 3, 3, 5};

// Items passed through one queue or channel. Exactly-once delivery makes both sides
// equal; a lost, duplicated or invented item changes the count or the hash sum.
struct Ledger {
  // relaxed: only summed; read after every task that touches them was joined.
  std::atomic<uint64_t> sent{0}, sent_sum{0}, received{0}, received_sum{0};
  void send(uint64_t id) {
    sent.fetch_add(1, std::memory_order_relaxed);
    sent_sum.fetch_add(mix(id), std::memory_order_relaxed);
  }
  void receive(uint64_t id) {
    received.fetch_add(1, std::memory_order_relaxed);
    received_sum.fetch_add(mix(id), std::memory_order_relaxed);
  }
};

// What must happen, counted as it happens. Every counter is only added to while the run
// goes on and read once its tasks were joined (or the runtime is gone): relaxed is
// enough for each, as the joins (and thread joins) order the reads after the writes.
struct Oracle {
  std::atomic<long> spawned{0};    // task callables ever made (copies of one count once)
  std::atomic<long> callables{0};  // callable copies alive now
  std::atomic<long> bodies{0};     // bodies running now (started and not ended)
  std::atomic<long> thrown{0}, retrieved{0}, dropped{0}, reported{0};
  std::atomic<long> timers_expected{0}, timers_fired{0};
  std::atomic<long> callbacks_expected{0}, callbacks_run{0};
  std::atomic<long> jobs_submitted{0}, jobs_run{0};
  std::atomic<long> lock_ops{0};
  std::atomic<long> conn_resets{0};
  std::atomic<long> ops[kOps] = {};
  long lock_counter = 0;  // guarded by World::lock
  Ledger queue, channel;

  std::mutex mu;
  std::vector<std::string> anomalies;  // guarded by mu; the first few
  long anomaly_count = 0;              // guarded by mu
  void anomaly(std::string what) {
    std::lock_guard lk(mu);
    ++anomaly_count;
    if (anomalies.size() < 20) anomalies.push_back(std::move(what));
  }
  void add(std::atomic<long>& c, long n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
  static long get(const std::atomic<long>& c) { return c.load(std::memory_order_relaxed); }
};

// Lives in a task's callable (or a timer's / done callback's std::function, hence
// copyable): counts the copies alive. A task destroys its callable once the body has
// run, or with the task if it never started; a timer's when it fires or is dropped.
class Tracked {
 public:
  explicit Tracked(Oracle* o) : o_(o) {
    o_->add(o_->spawned);
    o_->add(o_->callables);
  }
  Tracked(const Tracked& x) : o_(x.o_) {
    if (o_) o_->add(o_->callables);
  }
  Tracked(Tracked&& x) noexcept : o_(std::exchange(x.o_, nullptr)) {}
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() {
    if (o_) o_->add(o_->callables, -1);
  }

 private:
  Oracle* o_;
};

// Wraps fn so that its copies are tracked and its runs counted from the first
// instruction to the end (value, exception or cancellation).
template <class F>
auto counted(Oracle& o, F fn) {
  return [tr = Tracked(&o), fn = std::move(fn), op = &o](auto&&... a) mutable -> decltype(auto) {
    struct Body {
      Oracle* o;
      explicit Body(Oracle* x) : o(x) { o->add(o->bodies); }
      ~Body() { o->add(o->bodies, -1); }
    } body(op);
    return fn(std::forward<decltype(a)>(a)...);
  };
}

// What the actors share during one run.
struct World {
  Oracle& o;
  Clock::time_point deadline;
  uint16_t port = 0;
  Lock lock;
  Queue<uint64_t> queue{16};
  Channel<uint64_t> channel{8};
};

// The echo server's handler: echoes until EOF; a client that vanished (reset) ends it.
void echo(Oracle& o, TcpStream s) {
  char buf[4096];
  try {
    for (;;) {
      const std::size_t n = s.read(buf, sizeof buf);
      if (n == 0) return;
      s.write_all(buf, n);
    }
  } catch (const std::system_error&) {
    o.add(o.conn_resets);  // a cancelled client closed with data unread: ECONNRESET / EPIPE
  }
}

// One echo round trip of `size` random bytes on a fresh connection.
void tcp_round_trip(World& w, uint64_t seed, std::size_t size) {
  TcpStream s = open_connection("127.0.0.1", w.port);
  std::string msg(size, '\0');
  Rng r(seed);
  for (auto& c : msg) c = char(r.next());
  s.write_all(msg);
  if (s.read_exact(size) != msg) w.o.anomaly("tcp: the echo differs from what was sent");
  s.shutdown_write();
  char b;
  if (s.read(&b, 1) != 0) w.o.anomaly("tcp: bytes after the echo");
}

// Cancels t after a random number of yields and sleeps, then joins it; `child` must end
// only by itself or by the cancellation.
template <class T>
void cancel_soon(Rng& rng, Task<T>& t) {
  for (uint64_t k = rng.below(4); k > 0; --k) {
    if (rng.chance(50))
      yield();
    else
      sleep(rng.us(300));
  }
  (void)t.cancel("soak");
  try {
    t.get();
  } catch (const CancelledError&) {
  }
}

class Actor {
 public:
  Actor(World& w, unsigned id, uint64_t seed) : w_(w), o_(w.o), id_(id), rng_(seed) {}

  void run() {
    // First every operation once, in a random order (so a short run covers them all),
    // then random ones until the deadline.
    std::vector<Op> first;
    for (unsigned i = 0; i < kOps; ++i) first.push_back(Op(i));
    for (std::size_t i = first.size(); i > 1; --i) std::swap(first[i - 1], first[rng_.below(i)]);
    for (Op op : first) step(op);
    while (Clock::now() < w_.deadline) step(pick());
  }

 private:
  Op pick() {
    unsigned total = 0;
    for (unsigned wgt : kWeights) total += wgt;
    unsigned r = unsigned(rng_.below(total));
    for (unsigned i = 0; i < kOps; ++i) {
      if (r < kWeights[i]) return Op(i);
      r -= kWeights[i];
    }
    return kSleep;
  }

  // Item ids are unique across the run: the actor's number, then its sequence number.
  uint64_t next_id() { return (uint64_t(id_ + 1) << 40) | ++seq_; }
  uint64_t reserve_ids(unsigned n) {
    const uint64_t first = (uint64_t(id_ + 1) << 40) | (seq_ + 1);
    seq_ += n;
    return first;
  }

  void step(Op op) {
    try {
      run_op(op);
      o_.add(o_.ops[op]);
    } catch (const std::exception& e) {
      o_.anomaly(std::string(kOpNames[op]) + ": unexpected exception: " + e.what());
    } catch (const CancelledError& e) {
      o_.anomaly(std::string(kOpNames[op]) + ": unexpected CancelledError: " + e.what());
    }
  }

  void run_op(Op op) {
    Oracle& o = o_;
    World& w = w_;
    switch (op) {
      case kSpawnGet: {
        const uint64_t x = rng_.next();
        const unsigned yields = unsigned(rng_.below(4));
        auto t = spawn(counted(o, [x, yields] {
          for (unsigned i = 0; i < yields; ++i) yield();
          return mix(x);
        }));
        if (t.get() != mix(x)) o.anomaly("spawn_get: wrong value");
        break;
      }
      case kCancel: {
        const uint64_t x = rng_.next();
        const auto nap = rng_.us(500);
        auto t = spawn(counted(o, [x, nap] {
          sleep(nap);
          return x;
        }));
        for (uint64_t k = rng_.below(3); k > 0; --k) yield();
        const bool requested = t.cancel("soak");
        try {
          if (t.get() != x) o.anomaly("cancel: wrong value");
        } catch (const CancelledError&) {
          if (!requested) o.anomaly("cancel: a task ended cancelled that nobody cancelled");
          if (!t.cancelled()) o.anomaly("cancel: get() threw CancelledError but cancelled() is false");
        }
        break;
      }
      case kSleep:
        sleep(rng_.us(300));
        break;
      case kWaitFor: {
        const uint64_t x = rng_.next();
        const auto nap = rng_.us(1500);
        auto t = spawn(counted(o, [x, nap] {
          sleep(nap);
          return x;
        }));
        try {
          if (wait_for(t, 100us + rng_.us(1500)) != x) o.anomaly("wait_for: wrong value");
        } catch (const TimeoutError&) {
          if (!t.done() || !t.cancelled()) o.anomaly("wait_for: timed out, but the task was not cancelled and joined");
        }
        break;
      }
      case kGather: {
        const unsigned k = 2 + unsigned(rng_.below(5));
        const int thrower = rng_.chance(30) ? int(rng_.below(k)) : -1;
        std::vector<Task<uint64_t>> ts;
        for (unsigned i = 0; i < k; ++i) {
          const auto nap = rng_.us(200);
          ts.push_back(spawn(counted(o, [i, thrower, nap] {
            sleep(nap);
            if (int(i) == thrower) throw Boom("gather");
            return mix(i);
          })));
        }
        if (thrower >= 0) o.add(o.thrown);
        if (rng_.chance(50)) {
          auto rs = gather_settled(ts);
          for (unsigned i = 0; i < k; ++i) {
            if (int(i) == thrower) {
              try {
                if (rs[i].ok())
                  o.anomaly("gather_settled: the failure is missing");
                else
                  std::rethrow_exception(rs[i].error());
              } catch (const Boom&) {
                o.add(o.retrieved);
              }
            } else if (!rs[i].ok() || rs[i].value() != mix(i)) {
              o.anomaly("gather_settled: wrong result");
            }
          }
        } else {
          try {
            auto vs = gather(ts);
            if (thrower >= 0) o.anomaly("gather: returned despite a failure");
            for (unsigned i = 0; i < k; ++i)
              if (vs[i] != mix(i)) o.anomaly("gather: wrong value");
          } catch (const Boom&) {
            if (thrower < 0) o.anomaly("gather: a failure nobody threw");
            o.add(o.retrieved);
          }
          (void)wait(ts);  // after a failure the others go on: let them end
        }
        break;
      }
      case kGroup: {
        const unsigned k = 1 + unsigned(rng_.below(5));
        const int thrower = rng_.chance(30) ? int(rng_.below(k)) : -1;
        std::vector<std::chrono::microseconds> naps;
        for (unsigned i = 0; i < k; ++i) naps.push_back(rng_.us(300));
        try {
          task_group([&](TaskGroup& tg) {
            for (unsigned i = 0; i < k; ++i)
              tg.spawn(counted(o, [i, thrower, nap = naps[i]] {
                sleep(nap);
                if (int(i) == thrower) throw Boom("group");
              }));
          });
          if (thrower >= 0) o.anomaly("task_group: returned despite a failure");
        } catch (const ExceptionGroup& g) {
          if (thrower < 0 || g.size() != 1 || g.count<Boom>() != 1)
            o.anomaly("task_group: wrong ExceptionGroup: " + std::string(g.what()));
          else
            o.add(o.retrieved);
        }
        if (thrower >= 0) o.add(o.thrown);
        break;
      }
      case kLock: {
        if (rng_.chance(70)) {
          const bool nap = rng_.chance(50);
          std::lock_guard g(w.lock);
          const long v = o.lock_counter;
          if (nap) yield();
          o.lock_counter = v + 1;
          o.add(o.lock_ops);
        } else {
          // A child cancelled while it waits for the lock or holds it.
          auto t = spawn(counted(o, [&w, &o] {
            std::lock_guard g(w.lock);
            const long v = o.lock_counter;
            sleep(50us);
            o.lock_counter = v + 1;
            o.add(o.lock_ops);
          }));
          cancel_soon(rng_, t);
        }
        break;
      }
      case kQueuePut: {
        const uint64_t id = next_id();
        if (rng_.chance(20)) {
          try {
            w.queue.put_nowait(id);
            o.queue.send(id);
          } catch (const QueueFull&) {
          }
        } else {
          w.queue.put(id);
          o.queue.send(id);
        }
        break;
      }
      case kQueueChild: {
        // A child that puts or gets several items, cancelled at a random point: a
        // cancelled put inserts nothing; an item handed to a getter is returned.
        const bool getter = rng_.chance(50);
        const uint64_t first = reserve_ids(8);
        auto t = spawn(counted(o, [&w, &o, getter, first] {
          for (uint64_t i = 0; i < 8; ++i) {
            if (getter) {
              o.queue.receive(w.queue.get());
            } else {
              w.queue.put(first + i);
              o.queue.send(first + i);
            }
          }
        }));
        cancel_soon(rng_, t);
        break;
      }
      case kChannelSend: {
        const uint64_t id = next_id();
        if (rng_.chance(20)) {
          if (w.channel.try_send(id) == SendStatus::sent) o.channel.send(id);
        } else {
          w.channel.send(id);
          o.channel.send(id);
        }
        break;
      }
      case kChannelChild: {
        const bool receiver = rng_.chance(50);
        const uint64_t first = reserve_ids(8);
        auto t = spawn(counted(o, [&w, &o, receiver, first] {
          for (uint64_t i = 0; i < 8; ++i) {
            if (receiver) {
              std::optional<uint64_t> v = w.channel.recv();
              if (!v) {
                o.anomaly("chan_child: the channel closed during the run");
                return;
              }
              o.channel.receive(*v);
            } else {
              w.channel.send(first + i);
              o.channel.send(first + i);
            }
          }
        }));
        cancel_soon(rng_, t);
        break;
      }
      case kHandoff: {
        // Values handed through a queue or channel of its own to a consumer cancelled
        // at a random moment (often right after a put, so that the item and the
        // cancellation arrive together), its get inside timeout/wait_for sometimes:
        // each value is received once, by the consumer or drained afterwards. (Issue
        // 16's defect 2: a value handed to a consumer that was then cancelled was lost.)
        const bool chan = rng_.chance(50);
        const uint64_t via = rng_.below(3);  // 0: plain, 1: timeout, 2: wait_for
        const uint64_t n = 1 + rng_.below(4);
        Ledger& led = chan ? o.channel : o.queue;
        Queue<uint64_t> q;
        Channel<uint64_t> ch(8);  // more room than the 4 values sent: try_send never fails
        auto get_one = [&q, &ch, chan]() -> std::optional<uint64_t> {
          if (chan) return ch.recv();
          return q.get();
        };
        auto t = spawn(counted(o, [&led, get_one, via] {
          for (;;) {
            std::optional<uint64_t> v;
            if (via == 0)
              v = get_one();
            else if (via == 1)
              v = timeout(1h, get_one);
            else
              v = wait_for(get_one, 1h);
            if (!v) return;
            led.receive(*v);
          }
        }));
        const uint64_t first = reserve_ids(n);
        for (uint64_t i = 0; i < n; ++i) {
          if (rng_.chance(30)) yield();
          if (chan) {
            if (ch.try_send(first + i) != SendStatus::sent) o.anomaly("handoff: try_send refused");
          } else {
            q.put_nowait(first + i);
          }
          led.send(first + i);
        }
        if (rng_.chance(50)) {
          (void)t.cancel("soak");  // at once, as the last value arrives
          try {
            t.get();
          } catch (const CancelledError&) {
          }
        } else {
          cancel_soon(rng_, t);
        }
        // What the consumer did not take is still there.
        if (chan) {
          while (std::optional<uint64_t> v = ch.try_recv()) led.receive(*v);
        } else {
          while (q.qsize() > 0) led.receive(q.get_nowait());
        }
        break;
      }
      case kToThread: {
        const uint64_t x = rng_.next();
        if (rng_.chance(75)) {
          o.add(o.jobs_submitted);
          const uint64_t r = to_thread([&o, x] {
            o.add(o.jobs_run);
            return mix(x);
          });
          if (r != mix(x)) o.anomaly("to_thread: wrong value");
        } else {
          // The caller is cancelled while the job runs: the job still runs, once.
          auto t = spawn(counted(o, [&o, x] {
            o.add(o.jobs_submitted);
            return to_thread([&o, x] {
              std::this_thread::sleep_for(200us);
              o.add(o.jobs_run);
              return x;
            });
          }));
          cancel_soon(rng_, t);
        }
        break;
      }
      case kTcp:
        tcp_round_trip(w, rng_.next(), rng_.chance(50) ? 1 + rng_.below(64) : 1 + rng_.below(64 * 1024));
        break;
      case kTcpCancel: {
        const uint64_t seed = rng_.next();
        auto t = spawn(counted(o, [&w, seed] {
          for (uint64_t i = 0; i < 4; ++i) tcp_round_trip(w, seed + i, 1 + (mix(seed + i) % (32 * 1024)));
        }));
        cancel_soon(rng_, t);
        break;
      }
      case kDropped: {
        // A failure nobody retrieves: the runtime must report it when the task goes.
        const bool wait_first = rng_.chance(50);
        auto t = spawn(counted(o, []() -> void {
          yield();
          throw Boom("dropped");
        }));
        o.add(o.thrown);
        o.add(o.dropped);
        if (wait_first) (void)wait(std::vector<Task<>>{t});  // done; wait() retrieves nothing
        break;
      }
      case kTimer: {
        auto h = call_later(rng_.us(1000), counted(o, [&o] { o.add(o.timers_fired); }));
        if (rng_.chance(50) && h.cancel()) break;  // cancelled before it fired: never runs
        o.add(o.timers_expected);
        break;
      }
      case kDoneCallback: {
        const uint64_t x = rng_.next();
        auto t = spawn(counted(o, [x] {
          yield();
          return x;
        }));
        o.add(o.callbacks_expected);
        t.add_done_callback(counted(o, [&o, x](Task<uint64_t> done) {
          if (done.result() != x) o.anomaly("done_callback: wrong value");
          o.add(o.callbacks_run);
        }));
        if (t.get() != x) o.anomaly("done_callback: wrong value from get");
        break;
      }
      case kNested: {
        // A child that spawns grandchildren and gathers them.
        const unsigned k = 1 + unsigned(rng_.below(4));
        auto t = spawn(counted(o, [&o, k] {
          std::vector<Task<uint64_t>> kids;
          for (unsigned i = 0; i < k; ++i)
            kids.push_back(spawn(counted(o, [i] {
              yield();
              return uint64_t(i);
            })));
          uint64_t s = 0;
          for (uint64_t v : gather(kids)) s += v;
          return s;
        }));
        if (t.get() != uint64_t(k) * (k - 1) / 2) o.anomaly("nested: wrong sum");
        break;
      }
      case kOps:
        break;
    }
  }

  World& w_;
  Oracle& o_;
  unsigned id_;
  Rng rng_;
  uint64_t seq_ = 0;
};

// Aborts the program, after dumping every live task, if a run outlives its budget: a
// hang then names the seed and where each task waits instead of timing out silently.
class Watchdog {
 public:
  Watchdog(Runtime& rt, uint64_t seed, unsigned workers, std::chrono::seconds budget)
      : thread_([this, &rt, seed, workers, budget] {
          std::unique_lock lk(mu_);
          if (cv_.wait_for(lk, budget, [this] { return done_; })) return;
          std::fprintf(stderr, "soak: run with %u workers (seed %llu) did not end within %llds; live tasks:\n", workers,
                       static_cast<unsigned long long>(seed), static_cast<long long>(budget.count()));
          for (auto& t : all_tasks(rt))
            std::fprintf(stderr, "  %s: %s\n", t.name().c_str(), to_string(t.where()).c_str());
          std::abort();
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lk(mu_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  std::thread thread_;
};

// What the runtime itself says once the run is over and it is idle.
struct Outcome {
  long live_listed = -1;                        // tasks all_tasks() lists
  uint64_t live_tasks = ~0ull;                  // Runtime::metrics(): spawned and not ended
  std::size_t stacks_in_use = ~std::size_t(0);  // fibre stacks not given back
  uint64_t spawned = 0;                         // tasks the runtime ran in all (servers', callbacks' included)
  std::size_t stacks_high_water = 0;
};

Outcome soak_run(Oracle& o, unsigned workers, std::chrono::milliseconds length, uint64_t seed) {
  Outcome out;
  Options opts = test::opts(workers);
  opts.blocking_threads = 4;
  opts.report = [&o](const Report& r) {
    bool ours = false;
    if (r.kind == Report::Kind::unretrieved_exception && r.error) {
      try {
        std::rethrow_exception(r.error);
      } catch (const Boom&) {
        ours = true;
      } catch (...) {
      }
    }
    if (ours)
      o.add(o.reported);
    else
      o.anomaly("unexpected report: " + r.message + " [" + r.task_name + "]");
  };
  Runtime rt(opts);
  Watchdog dog(rt, seed, workers, std::chrono::duration_cast<std::chrono::seconds>(length) + 120s);
  rt.block_on([&] {
    World w{o, Clock::now() + length};
    Server srv = start_server([&o](TcpStream s) { echo(o, std::move(s)); }, "127.0.0.1", 0);
    w.port = srv.port();
    std::vector<Task<>> consumers;
    for (int i = 0; i < 2; ++i) {
      consumers.push_back(spawn(counted(o, [&w, &o] {
        for (;;) {
          uint64_t v;
          try {
            v = w.queue.get();
          } catch (const QueueShutDown&) {
            return;
          }
          o.queue.receive(v);
        }
      })));
      consumers.push_back(spawn(counted(o, [&w, &o] {
        for (uint64_t v : w.channel) o.channel.receive(v);
      })));
    }
    std::vector<Task<>> actors;
    for (unsigned i = 0; i < kActors; ++i)
      actors.push_back(spawn(counted(o, [&w, i, seed] { Actor(w, i, mix(seed + i)).run(); })));
    for (auto& a : actors) a.get();
    // Drain: the consumers take what is left, then stop.
    w.queue.shutdown();
    w.channel.close();
    for (auto& c : consumers) c.get();
    srv.close();
    srv.wait_closed();
    // Timer callbacks, done callbacks and pool jobs finish on their own: wait for them
    // (bounded; a shortfall is reported by the checks below).
    const auto give_up = Clock::now() + 30s;
    while ((Oracle::get(o.timers_fired) < Oracle::get(o.timers_expected) ||
            Oracle::get(o.callbacks_run) < Oracle::get(o.callbacks_expected) ||
            Oracle::get(o.jobs_run) < Oracle::get(o.jobs_submitted)) &&
           Clock::now() < give_up)
      sleep(1ms);
  });
  // Idle now: once the main task has switched out, the runtime's own counters must show
  // no task, no fibre and no stack left.
  const auto give_up = Clock::now() + 10s;
  for (;;) {
    out.live_listed = long(all_tasks(rt).size());
    const Metrics m = rt.metrics();
    out.live_tasks = m.live_tasks;
    out.stacks_in_use = m.stacks_in_use;
    out.spawned = m.spawned;
    out.stacks_high_water = m.stacks_high_water;
    if ((out.live_listed == 0 && out.live_tasks == 0 && out.stacks_in_use == 0) || Clock::now() > give_up) break;
    std::this_thread::sleep_for(1ms);
  }
  rt.shutdown();
  return out;
}

}  // namespace

TEST_CASE("soak: a random mix of every operation over 1, 2, 4 and 8 workers loses nothing", "[soak]") {
  const double seconds = soak_seconds();
  const uint64_t seed = soak_seed();
  const unsigned counts[] = {1, 2, 4, 8};
  std::printf("soak: SOAK_SEED=%llu SOAK_SECONDS=%g (%u actors per run)\n", static_cast<unsigned long long>(seed),
              seconds, kActors);
  std::fflush(stdout);
  for (unsigned workers : counts) {
    const auto length = std::chrono::milliseconds(long(seconds * 1000 / std::size(counts)));
    const uint64_t run_seed = mix(seed ^ workers);
    INFO("workers " << workers << ", SOAK_SEED=" << seed);
    Oracle o;
    const int fds_before = test::open_fds();
    const Outcome out = soak_run(o, workers, length, run_seed);
    const int fds_after = test::open_fds();

    long total_ops = 0;
    std::string per_op;
    for (unsigned i = 0; i < kOps; ++i) {
      total_ops += Oracle::get(o.ops[i]);
      per_op += std::string(" ") + kOpNames[i] + "=" + std::to_string(Oracle::get(o.ops[i]));
    }
    std::printf(
        "soak[%u workers, %lld ms]: %ld ops, %llu tasks (peak %zu stacks), %llu queue items, %llu channel items, "
        "%ld exceptions (%ld retrieved, %ld reported), %ld timers, %ld callbacks, %ld jobs, %ld lock ops, "
        "%ld resets;%s\n",
        workers, static_cast<long long>(length.count()), total_ops, static_cast<unsigned long long>(out.spawned),
        out.stacks_high_water, static_cast<unsigned long long>(o.queue.received.load()),
        static_cast<unsigned long long>(o.channel.received.load()), Oracle::get(o.thrown), Oracle::get(o.retrieved),
        Oracle::get(o.reported), Oracle::get(o.timers_fired), Oracle::get(o.callbacks_run), Oracle::get(o.jobs_run),
        Oracle::get(o.lock_ops), Oracle::get(o.conn_resets), per_op.c_str());
    std::fflush(stdout);

    {
      std::lock_guard lk(o.mu);
      for (const auto& a : o.anomalies) UNSCOPED_INFO("anomaly: " << a);
      CHECK(o.anomaly_count == 0);
    }
    // Every task ended: its callable is gone, every body ended, the runtime lists none
    // and counts none, and every fibre stack is back.
    CHECK(out.live_listed == 0);
    CHECK(out.live_tasks == 0);
    CHECK(out.stacks_in_use == 0);
    CHECK(Oracle::get(o.callables) == 0);
    CHECK(Oracle::get(o.bodies) == 0);
    // Every item exactly once.
    CHECK(o.queue.received.load() == o.queue.sent.load());
    CHECK(o.queue.received_sum.load() == o.queue.sent_sum.load());
    CHECK(o.channel.received.load() == o.channel.sent.load());
    CHECK(o.channel.received_sum.load() == o.channel.sent_sum.load());
    // Every exception retrieved or reported, exactly once.
    CHECK(Oracle::get(o.reported) == Oracle::get(o.dropped));
    CHECK(Oracle::get(o.thrown) == Oracle::get(o.retrieved) + Oracle::get(o.reported));
    // Callbacks, jobs, the lock.
    CHECK(Oracle::get(o.timers_fired) == Oracle::get(o.timers_expected));
    CHECK(Oracle::get(o.callbacks_run) == Oracle::get(o.callbacks_expected));
    CHECK(Oracle::get(o.jobs_run) == Oracle::get(o.jobs_submitted));
    CHECK(o.lock_counter == Oracle::get(o.lock_ops));
    // Every operation ran (each actor starts with one of each).
    for (unsigned i = 0; i < kOps; ++i) {
      INFO("operation " << kOpNames[i]);
      CHECK(Oracle::get(o.ops[i]) >= long(kActors));
    }
    CHECK(fds_after == fds_before);
  }
}
