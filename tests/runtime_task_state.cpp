// A task's scheduling state machine (runtime/src/core/task_state.hpp), driven directly on a
// bare task header with no runtime around it: each transition's outcome and the state it
// leaves, including the ones the runtime only reaches in rare races (a wake while the
// task is queued, a dump holding a task that shutdown abandons).
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "core/task_state.hpp"

using namespace spindle::detail;
namespace ts = spindle::detail::task_state;

namespace {

constexpr CoreOps kNoOps{nullptr, nullptr, nullptr};

struct Bare {
  TaskHeader t{&kNoOps};
  uint16_t state() const { return t.sched.load(std::memory_order_relaxed); }
};

constexpr uint16_t kIdle = kStarted;
constexpr uint16_t kReady = kStarted | kQueued;
constexpr uint16_t kRunningS = kStarted | kRunning;

// Takes a NEW task to IDLE as a worker would: queued, started, suspended once.
void make_idle(TaskHeader* t) {
  ts::submit(t);
  ts::start(t);
  REQUIRE(ts::publish_suspended(t) == ts::Suspended::idle);
}

}  // namespace

TEST_CASE("a task's life: submit, start, suspend, wake, run, end", "[task_state]") {
  Bare b;
  TaskHeader* t = &b.t;
  REQUIRE(b.state() == 0);
  CHECK(ts::wake(t) == ts::Wake::not_started);  // NEW: submitting it queues it
  CHECK(ts::hold(t) == ts::Hold::busy);
  CHECK(b.state() == 0);

  ts::submit(t);
  CHECK(b.state() == kQueued);
  CHECK_FALSE(ts::started(t));
  CHECK(ts::wake(t) == ts::Wake::not_started);  // QUEUED: no mark, it runs anyway
  CHECK(ts::hold(t) == ts::Hold::busy);
  CHECK(b.state() == kQueued);

  ts::start(t);
  CHECK(b.state() == kRunningS);
  CHECK(ts::started(t));
  CHECK(ts::hold(t) == ts::Hold::busy);

  SECTION("woken while running: requeued at the publish, the mark consumed") {
    CHECK(ts::wake(t) == ts::Wake::notified_running);
    CHECK(b.state() == (kRunningS | kNotified));
    CHECK(ts::publish_suspended(t) == ts::Suspended::requeue);
    CHECK(b.state() == kReady);
  }
  SECTION("a yield writes nothing: queued, it is still RUNNING; a wake marks it, run keeps the mark") {
    // The worker queues a yielder without a transition, and run leaves it as it is.
    ts::run(t);
    CHECK(b.state() == kRunningS);
    CHECK(ts::hold(t) == ts::Hold::busy);              // a dump leaves it alone
    CHECK(ts::wake(t) == ts::Wake::notified_running);  // queued already: only the mark
    ts::run(t);
    CHECK(b.state() == (kRunningS | kNotified));
    CHECK(ts::publish_suspended(t) == ts::Suspended::requeue);  // its next suspension reads it
    CHECK(b.state() == kReady);
  }
  SECTION("suspended with no wake: IDLE, and the first wake must push it, once") {
    CHECK(ts::publish_suspended(t) == ts::Suspended::idle);
    CHECK(b.state() == kIdle);
    CHECK(ts::wake(t) == ts::Wake::must_schedule);
    CHECK(b.state() == kReady);
    CHECK(ts::wake(t) == ts::Wake::already_queued);  // marked, not pushed again
    CHECK(b.state() == (kReady | kNotified));
  }
  // READY (with or without N): run keeps a mark that arrived while it was queued.
  const bool marked = b.state() & kNotified;
  if (!marked) {
    CHECK(ts::wake(t) == ts::Wake::already_queued);
    CHECK(b.state() == (kReady | kNotified));
  }
  ts::run(t);
  CHECK(b.state() == (kRunningS | kNotified));
  CHECK(ts::publish_suspended(t) == ts::Suspended::requeue);  // that mark requeues it
  ts::run(t);
  CHECK(b.state() == kRunningS);
  CHECK(ts::publish_suspended(t) == ts::Suspended::idle);

  CHECK(ts::wake(t) == ts::Wake::must_schedule);
  ts::run(t);
  CHECK(ts::wake(t) == ts::Wake::notified_running);
  ts::end(t);  // a late mark is dropped with the rest
  CHECK(b.state() == (kEnded | kStarted));
  CHECK(ts::wake(t) == ts::Wake::ended);
  CHECK(ts::hold(t) == ts::Hold::busy);
  CHECK(b.state() == (kEnded | kStarted));
}

TEST_CASE("a task ends unstarted from NEW or QUEUED, and stays ended", "[task_state]") {
  Bare b;
  TaskHeader* t = &b.t;
  const bool queued = GENERATE(false, true);
  if (queued) ts::submit(t);
  ts::end_unstarted(t);
  CHECK(b.state() == (kEnded | kFnDropped));
  CHECK_FALSE(ts::started(t));
  CHECK(ts::wake(t) == ts::Wake::ended);
  CHECK(ts::hold(t) == ts::Hold::busy);
  CHECK(b.state() == (kEnded | kFnDropped));
}

TEST_CASE("a dump holds only an IDLE task, and lets go as a worker would", "[task_state]") {
  Bare b;
  TaskHeader* t = &b.t;
  make_idle(t);
  REQUIRE(ts::hold(t) == ts::Hold::held);
  CHECK(b.state() == kRunningS);         // to wakers it is running
  CHECK(ts::hold(t) == ts::Hold::busy);  // a second dump stays out

  SECTION("no wake meanwhile: IDLE again") {
    CHECK(ts::release(t) == ts::Release::idle);
    CHECK(b.state() == kIdle);
    CHECK(ts::wake(t) == ts::Wake::must_schedule);
  }
  SECTION("woken meanwhile: the dump must push it") {
    CHECK(ts::wake(t) == ts::Wake::notified_running);
    CHECK(ts::release(t) == ts::Release::must_schedule);
    CHECK(b.state() == kReady);
    CHECK(ts::hold(t) == ts::Hold::busy);  // queued: not the dump's to take
  }
}

TEST_CASE("shutdown's abandon ends a started task for good", "[task_state]") {
  Bare b;
  TaskHeader* t = &b.t;
  make_idle(t);

  SECTION("IDLE: no queue will see it") { CHECK(ts::abandon(t) == ts::Abandoned::settled); }
  SECTION("READY: a queue holds it, or its waker is about to push it") {
    REQUIRE(ts::wake(t) == ts::Wake::must_schedule);
    CHECK(ts::abandon(t) == ts::Abandoned::was_queued);
  }
  CHECK(b.state() == (kEnded | kStarted));
  CHECK(ts::wake(t) == ts::Wake::ended);
  CHECK(ts::hold(t) == ts::Hold::busy);
}

TEST_CASE("a dump's release leaves a task that shutdown abandoned meanwhile ENDED", "[task_state]") {
  Bare b;
  TaskHeader* t = &b.t;
  const bool woken = GENERATE(false, true);
  make_idle(t);
  REQUIRE(ts::hold(t) == ts::Hold::held);
  if (woken) CHECK(ts::wake(t) == ts::Wake::notified_running);
  CHECK(ts::abandon(t) == ts::Abandoned::settled);
  // Not IDLE again (a later wake would push it to a runtime that is gone), not pushed.
  CHECK(ts::release(t) == ts::Release::ended);
  CHECK(b.state() == (kEnded | kStarted));
  CHECK(ts::wake(t) == ts::Wake::ended);
}

TEST_CASE("of wakes racing on an IDLE task, exactly one pushes it", "[task_state]") {
  constexpr int kThreads = 4;
  constexpr int kRounds = 200;
  Bare b;
  TaskHeader* t = &b.t;
  make_idle(t);
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<int> must_schedule{0}, marked{0}, other{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> wakers;
    for (int i = 0; i < kThreads; ++i) {
      wakers.emplace_back([&] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        switch (ts::wake(t)) {
          case ts::Wake::must_schedule:
            must_schedule.fetch_add(1);
            break;
          case ts::Wake::already_queued:
            marked.fetch_add(1);
            break;
          default:
            other.fetch_add(1);
            break;
        }
      });
    }
    go.store(true, std::memory_order_release);
    for (auto& w : wakers) w.join();
    REQUIRE(must_schedule.load() == 1);
    REQUIRE(marked.load() == kThreads - 1);
    REQUIRE(other.load() == 0);
    // The pusher's worker runs it; the other wakes left their mark, which requeues it
    // once more; then it suspends with nothing pending.
    REQUIRE(b.state() == (kReady | kNotified));
    ts::run(t);
    REQUIRE(ts::publish_suspended(t) == ts::Suspended::requeue);
    ts::run(t);
    REQUIRE(ts::publish_suspended(t) == ts::Suspended::idle);
  }
}
