// Task lifecycles, combined (Tokio's task_combinations is the model): when the task is
// cancelled {never, before it starts, while suspended in each kind of wait, after it
// ended, twice, from a foreign thread} x what becomes of its handle {kept, dropped
// early, dropped late} x how its body ends {a value, an exception, a cancellation it
// swallows} x {pinned, not} x {1, 2, 4 workers}. Each combination checks the outcome
// asyncio defines and, through the harness, that nothing is left behind; the reports of
// exceptions nobody retrieved are counted against the combinations that must make one.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spindle/sync.hpp>

#include "support.hpp"

using namespace spindle;

namespace {

enum class CancelAt { never, before_start, suspended, after_end, twice, foreign_thread };
enum class HandleFate { kept, dropped_early, dropped_late };
enum class Ending { value, exception, swallow_cancel };
enum class WaitKind { future, event, queue, lock, child_task, sleep };

// How the body ended, as the body itself saw it.
enum How : int { not_ended = 0, returned_value, threw_error, cancelled_out, swallowed };

struct Waits {
  Future<> gate;        // WaitKind::future
  Event event;          // WaitKind::event
  Queue<int> queue;     // WaitKind::queue
  Lock lock;            // WaitKind::lock: held by the test until it serves
  Future<> child_gate;  // WaitKind::child_task: the child waits on it
};

struct Probe {
  // seq_cst throughout: test bookkeeping read from other threads, no hot path.
  std::atomic<bool> started{false};
  std::atomic<int> how{not_ended};
};

constexpr int kValue = 42;
constexpr int kSwallowed = 7;

void wait_in(WaitKind k, Waits& w, bool served_soon) {
  switch (k) {
    case WaitKind::future:
      w.gate.get();
      break;
    case WaitKind::event:
      w.event.wait();
      break;
    case WaitKind::queue:
      (void)w.queue.get();
      break;
    case WaitKind::lock:
      w.lock.lock();
      w.lock.unlock();
      break;
    case WaitKind::child_task: {
      Future<> g = w.child_gate;
      spawn([g]() mutable { g.get(); }).get();
      break;
    }
    case WaitKind::sleep:
      sleep(served_soon ? std::chrono::milliseconds(1) : std::chrono::hours(1));
      break;
  }
}

void serve(WaitKind k, Waits& w) {
  switch (k) {
    case WaitKind::future:
      w.gate.set_result();
      break;
    case WaitKind::event:
      w.event.set();
      break;
    case WaitKind::queue:
      w.queue.put_nowait(1);
      break;
    case WaitKind::lock:
      w.lock.unlock();
      break;
    case WaitKind::child_task:
      w.child_gate.set_result();
      break;
    case WaitKind::sleep:
      break;  // a 1 ms sleep serves itself
  }
}

int body(WaitKind k, Ending e, bool served_soon, std::shared_ptr<Waits> w, std::shared_ptr<Probe> p) {
  p->started = true;
  try {
    wait_in(k, *w, served_soon);
  } catch (const CancelledError&) {
    if (e == Ending::swallow_cancel) {
      p->how = swallowed;
      return kSwallowed;
    }
    p->how = cancelled_out;
    throw;
  }
  if (e == Ending::exception) {
    p->how = threw_error;
    throw std::runtime_error("the body failed");
  }
  p->how = returned_value;
  return kValue;
}

// The outcome a combination must end with (once its body started, if it did).
How expected(CancelAt c, Ending e, bool started) {
  const bool cancelled_while_waiting = c == CancelAt::suspended || c == CancelAt::twice ||
                                       c == CancelAt::foreign_thread || (c == CancelAt::before_start && started);
  if (c == CancelAt::before_start && !started) return not_ended;  // the body never runs
  if (cancelled_while_waiting) return e == Ending::swallow_cancel ? swallowed : cancelled_out;
  return e == Ending::exception ? threw_error : returned_value;
}

template <class Pred>
void yield_until(Pred pred) {
  while (!pred()) yield();
}

struct Combination {
  CancelAt cancel;
  HandleFate fate;
  Ending ending;
  WaitKind wait;
  bool pinned;
  std::string describe() const {
    return "cancel " + std::to_string(int(cancel)) + ", handle " + std::to_string(int(fate)) + ", ending " +
           std::to_string(int(ending)) + ", wait " + std::to_string(int(wait)) + ", pinned " + std::to_string(pinned);
  }
};

// Runs one combination inside a task. The probe of a task whose handle is dropped goes
// to `unheld`: once every task has ended, each of them whose body threw must have left
// one report of an exception nobody retrieved (counted then, since a body cancelled
// "before its start" may have started on another loop and end after this returns).
void run_one(const Combination& c, std::vector<std::shared_ptr<Probe>>& unheld) {
  INFO(c.describe());
  auto w = std::make_shared<Waits>();
  auto p = std::make_shared<Probe>();
  if (c.fate != HandleFate::kept) unheld.push_back(p);
  const bool served_soon = c.cancel == CancelAt::never || c.cancel == CancelAt::after_end;
  if (c.wait == WaitKind::lock) w->lock.lock();
  TaskOptions o;
  o.pinned = c.pinned;  // pinned to the caller's loop: before_start is then deterministic
  Task<int> t = spawn(o, [k = c.wait, e = c.ending, served_soon, w, p] { return body(k, e, served_soon, w, p); });
  Task<> canceller = t;  // a type-erased view: the handle we cancel through
  if (c.fate == HandleFate::dropped_early) t = Task<int>();

  auto suspend_then = [&] {
    yield_until([&] { return p->started.load(); });
    test::until_suspended(canceller);
  };
  switch (c.cancel) {
    case CancelAt::never:
      if (c.wait != WaitKind::sleep) suspend_then();
      serve(c.wait, *w);
      break;
    case CancelAt::before_start:
      // The lock is released only once the task is over (below): released now, a body
      // that had already started on another loop could take it without suspending, and
      // a cancellation is raised only where a task suspends (asyncio's acquire of a free
      // lock does not yield either), so it would end as if never cancelled.
      CHECK(canceller.cancel());
      break;
    case CancelAt::suspended:
    case CancelAt::twice:
    case CancelAt::foreign_thread:
      suspend_then();
      if (c.cancel == CancelAt::foreign_thread) {
        bool ok = false;
        std::thread([&] { ok = canceller.cancel("from a foreign thread"); }).join();
        CHECK(ok);
      } else {
        CHECK(canceller.cancel());
        // The second may find the task already done (a swallowing body ends quickly on
        // another loop), so only the first one's answer is checked.
        if (c.cancel == CancelAt::twice) (void)canceller.cancel("again");
      }
      if (c.wait == WaitKind::lock) serve(c.wait, *w);
      break;
    case CancelAt::after_end:
      if (c.wait != WaitKind::sleep) suspend_then();
      serve(c.wait, *w);
      yield_until([&] { return canceller.done(); });
      CHECK_FALSE(canceller.cancel());
      break;
  }
  struct ReleaseAtEnd {  // before_start's lock, released when this combination is over
    Waits* w;
    bool armed;
    ~ReleaseAtEnd() {
      if (armed) w->lock.unlock();
    }
  } release_at_end{w.get(), c.cancel == CancelAt::before_start && c.wait == WaitKind::lock};
  if (c.fate == HandleFate::dropped_late) t = Task<int>();
  if (c.fate != HandleFate::kept) canceller = Task<>();  // now nobody holds it

  const bool body_may_not_run = c.cancel == CancelAt::before_start;
  if (c.fate == HandleFate::kept) {
    yield_until([&] { return t.done(); });  // so that `started` is final below
    const How want = expected(c.cancel, c.ending, p->started.load());
    switch (want) {
      case returned_value:
        CHECK(t.get() == kValue);
        break;
      case swallowed:
        CHECK(t.get() == kSwallowed);
        break;
      case threw_error:
        CHECK_THROWS_WITH(t.get(), "the body failed");
        break;
      case cancelled_out:
      case not_ended:
        CHECK_THROWS_AS(t.get(), CancelledError);
        CHECK(t.cancelled());
        break;
    }
    CHECK(t.done());
    CHECK(p->how.load() == expected(c.cancel, c.ending, p->started.load()));
    return;
  }
  // Nobody holds the task: its end is seen through the probe (a body cancelled before
  // it started never runs; the harness checks that it ended all the same).
  const bool started = p->started.load();  // read once: it may turn true just after
  if (!body_may_not_run || started) yield_until([&] { return p->how.load() != not_ended; });
  if (body_may_not_run && !started) return;
  CHECK(p->how.load() == expected(c.cancel, c.ending, true));
}

}  // namespace

TEST_CASE("task lifecycles: every cancel point x handle fate x ending x wait kind x pinning",
          "[tasks][cancel][lifecycle]") {
  const unsigned n = GENERATE(1u, 2u, 4u);
  const bool pinned = GENERATE(false, true);
  std::vector<std::shared_ptr<Probe>> unheld;
  {
    test::Checked harness(n, {.reports = true});  // unretrieved exceptions are counted below
    harness.block_on([&] {
      for (int c = 0; c <= int(CancelAt::foreign_thread); ++c)
        for (int f = 0; f <= int(HandleFate::dropped_late); ++f)
          for (int e = 0; e <= int(Ending::swallow_cancel); ++e)
            for (int k = 0; k <= int(WaitKind::sleep); ++k)
              run_one({CancelAt(c), HandleFate(f), Ending(e), WaitKind(k), pinned}, unheld);
    });
    harness.finish();  // every task has ended: the probes are final
    std::size_t must_report = 0;
    for (const auto& p : unheld) must_report += p->how.load() == threw_error;
    std::size_t unretrieved = harness.reports.count(Report::Kind::unretrieved_exception);
    CHECK(unretrieved == must_report);
    CHECK(harness.reports.all().size() == unretrieved);  // and no report of another kind
  }
}
