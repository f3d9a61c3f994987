// detail::wait_parked and wait_parked_until, the one protocol by which a wait hands its
// Waiter to a notifier (a slot or list under a lock) and gets it back: how each way a
// wait can end is reported (notified; cancelled or timed out while still parked; taken
// by a notifier as the wait ended for another reason), and that a Waiter a notifier
// took is never given up before that notify has landed.
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

#include <spindle/detail/parked_waiter.hpp>
#include <spindle/detail/spin.hpp>

#include "support.hpp"

using namespace spindle;
using detail::ParkEnd;
using detail::Waiter;
using test::until_suspended;
using namespace std::chrono_literals;

namespace {

// One slot, as a TaskGroup's joiner or a Generator's consumer: a notifier takes the
// Waiter out under the lock, then notifies it.
struct Slot {
  detail::SpinLock lock;
  Waiter* parked = nullptr;

  void park(Waiter& w) {
    std::lock_guard g(lock);
    parked = &w;
  }
  // The notifier's side. False if nobody was parked.
  bool serve() {
    Waiter* w;
    {
      std::lock_guard g(lock);
      w = std::exchange(parked, nullptr);
    }
    if (w) w->notify();
    return w != nullptr;
  }
  bool empty() {
    std::lock_guard g(lock);
    return parked == nullptr;
  }
  // A notifier that takes the parked Waiter out now and notifies it only later, from a
  // task of its own (on one loop that task cannot run before the waiting fibre
  // suspends again). For a take_back: returns false, "taken".
  bool taken_now_notified_later(Task<>& notifier) {
    Waiter* taken;
    {
      std::lock_guard g(lock);
      taken = std::exchange(parked, nullptr);
    }
    notifier = spawn([taken] { taken->notify(); });
    return false;
  }
};

struct Seen {
  ParkEnd end{Waiter::Outcome::timed_out, false};
  int take_backs = 0;   // calls of take_back
  bool landed = false;  // the Waiter read as notified when the wait returned
};

// Spawns a task that parks a Waiter in `slot` and waits on it (until deadline_ns, when
// not 0), with `how(own)` as its take_back (`own`: the slot's plain take_back); records
// in `seen` how the wait ended. Raises CancelledError when cancelled and not served.
template <class How>
Task<> spawn_parked(Slot& slot, Seen& seen, How how, int64_t deadline_ns = 0) {
  return spawn([&slot, &seen, how, deadline_ns]() mutable {
    Waiter w;
    slot.park(w);
    auto own = detail::take_back_slot(slot.lock, slot.parked, w);
    auto take_back = [&] {
      ++seen.take_backs;
      return how(own);
    };
    const auto where = std::source_location::current();
    seen.end = deadline_ns ? detail::wait_parked_until(w, take_back, true, where, deadline_ns)
                           : detail::wait_parked(w, take_back, true, where);
    seen.landed = w.notified();
    if (seen.end.outcome == Waiter::Outcome::cancelled && !seen.end.taken) w.raise_cancelled();
  });
}
constexpr auto kOwn = [](auto& own) { return own(); };

}  // namespace

TEST_CASE("a parked waiter that is served ends notified, without taking itself back", "[parked]") {
  test::Checked harness(SPINDLE_WORKERS());
  harness.rt.block_on([] {
    Slot slot;
    Seen seen;
    auto t = spawn_parked(slot, seen, kOwn);
    until_suspended(t);
    CHECK(slot.serve());
    t.get();
    CHECK(seen.end.outcome == Waiter::Outcome::notified);
    CHECK(seen.end.taken);
    CHECK(seen.take_backs == 0);
    CHECK(seen.landed);
    CHECK(slot.empty());
  });
}

TEST_CASE("a parked waiter cancelled while still parked takes itself back: not served", "[parked]") {
  test::Checked harness(SPINDLE_WORKERS());
  harness.rt.block_on([] {
    Slot slot;
    Seen seen;
    auto t = spawn_parked(slot, seen, kOwn);
    until_suspended(t);
    t.cancel("stop");
    CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK(seen.end.outcome == Waiter::Outcome::cancelled);
    CHECK_FALSE(seen.end.taken);
    CHECK(seen.take_backs == 1);
    CHECK_FALSE(seen.landed);
    CHECK(slot.empty());
    CHECK_FALSE(slot.serve());  // nothing left for a notifier to take
  });
}

TEST_CASE("a parked waiter taken by a notifier as its wait is cancelled waits for that notify", "[parked]") {
  test::Checked harness(SPINDLE_WORKERS());
  harness.rt.block_on([] {
    Slot slot;
    Seen seen;
    Task<> notifier;
    // A notifier takes w out just as the cancelled wait comes to take it back.
    auto t = spawn_parked(slot, seen, [&](auto&) { return slot.taken_now_notified_later(notifier); });
    until_suspended(t);
    t.cancel("stop");
    t.get();  // served: the wait returns, its cancellation left pending (never raised here)
    notifier.get();
    CHECK(seen.end.outcome == Waiter::Outcome::cancelled);
    CHECK(seen.end.taken);
    CHECK(seen.take_backs == 1);
    CHECK(seen.landed);  // the wait returned only once the notify had landed
    CHECK(slot.empty());
  });
}

TEST_CASE("wait_parked_until: the deadline passes while parked, or as a notifier takes the waiter", "[parked]") {
  test::Checked harness(SPINDLE_WORKERS());
  harness.rt.block_on([] {
    for (const bool taken_at_deadline : {false, true}) {
      CAPTURE(taken_at_deadline);
      Slot slot;
      Seen seen;
      Task<> notifier;
      auto t = spawn_parked(
          slot, seen, [&](auto& own) { return taken_at_deadline ? slot.taken_now_notified_later(notifier) : own(); },
          detail::deadline_after(1ms));
      t.get();
      if (notifier) notifier.get();
      CHECK(seen.end.outcome == Waiter::Outcome::timed_out);
      CHECK(seen.end.taken == taken_at_deadline);
      CHECK(seen.take_backs == 1);
      CHECK(seen.landed == taken_at_deadline);
      CHECK(slot.empty());
    }
  });
}
