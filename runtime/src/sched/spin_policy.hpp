// When an idle worker spins before it parks, and for how long.
//
// Parking costs little, but being woken costs the waker a system call and the sleeper a
// thread wake-up: tens of µs when its CPU had gone idle (60-80 µs on the machines this
// was tuned on). A worker that gets work within a few µs of running dry saves all of
// that by looking for it instead of sleeping. Spinning pays only when the work does come
// within the spin; otherwise it burns CPU that belongs to the process's other threads
// (often the ones that would make the work) and to the machine's other processes. And
// on an oversubscribed CPU the OS lets a thread that spun run less readily than one that
// slept, so a spinner that is preempted may wait a whole timeslice before it sees the
// work it spun for. The rules:
//
//   - Only a counted searcher spins (Idle lets at most half of the workers search); the
//     others make one pass over the queues and park. One refused after its pass asks
//     again for a moment (kPlaceWait looks): when two loops hand work back and forth,
//     the searcher holding the place is about to find the work just handed to it.
//   - A spin lasts at most kBudget (20 µs), with a growing pause between probes (of
//     other workers' queues); between pauses it looks at its own inbox and the global
//     queue's count, so work handed to it is taken at once.
//   - It spins only while spinning has paid recently: a runtime-wide score, raised by a
//     spin that found work and lowered by one that did not, decides.
//   - A spin ends at once when the worker sees it was preempted: a gap between two
//     probes far longer than a probe (kPreemptGap: a probe takes well under 1 µs, an
//     interrupt or a page fault some µs, a timeslice given to another thread 1 ms or
//     more) means the OS ran something else on this CPU. That halves the score: one
//     preemption (a quiet machine has one now and then) leaves spinning on, two in a
//     row turn it off.
//   - While the score says no, an idle searcher may make a trial spin of kTrialBudget,
//     at most one per trial interval across the runtime: longer than a wake-up, so that
//     two loops that hand work back and forth (each parks, the other wakes it) can find
//     out that spinning would pay again. Their wake-ups are slower than kBudget, so
//     ordinary spins would only ever see them miss. The interval is kTrialMin while
//     spins are not preempted; each preempted spin doubles it (up to kTrialMax) and
//     each trial that finds work halves it: on an oversubscribed machine trials get
//     rare, and they stay frequent where spins merely ran out.
//
// The score is shared by the workers (the state of the machine is the same for all):
// relaxed loads and stores, written only when it changes, so workers whose spins keep
// paying only read it. A lost update between two workers changes one step, never the
// outcome of many.
#pragma once

#include <atomic>
#include <cstdint>

#include <spindle/detail/spin.hpp>

namespace spindle::detail {

class alignas(64) SpinPolicy {  // a cache line of its own: read by every idle worker
 public:
  static constexpr int64_t kBudget = 20'000;         // ns: an ordinary spin
  static constexpr int64_t kTrialBudget = 100'000;   // ns: a trial spin, longer than a wake-up
  static constexpr int64_t kTrialMin = 1'000'000;    // ns: the shortest trial interval
  static constexpr int64_t kTrialMax = 256'000'000;  // ns: the longest
  static constexpr int64_t kPreemptGap = 50'000;     // ns between probes: we were preempted
  static constexpr unsigned kPlaceWait = 16;         // looks for a searcher's place, 4 pauses apart
  static constexpr unsigned kMaxPauses = 32;         // pauses between probes, at most

  enum class End { found, timed_out, preempted };

  /// How long a counted searcher that has just made a pass in vain spins from `now`
  /// (monotonic ns); 0: it parks at once.
  int64_t budget(int64_t now) noexcept {
    // relaxed, here and in record(): hints (see above).
    if (score_.load(std::memory_order_relaxed) >= kOn) return kBudget;
    int64_t next = next_trial_.load(std::memory_order_relaxed);
    if (now < next) return 0;
    // The CAS only hands the trial to one worker; it orders nothing else.
    const int64_t every = trial_every_.load(std::memory_order_relaxed);
    if (!next_trial_.compare_exchange_strong(next, now + every, std::memory_order_relaxed)) return 0;
    return kTrialBudget;
  }

  /// How a spin of `budget` (what budget() gave) ended.
  void record(End e, int64_t budget) noexcept {
    const int32_t s = score_.load(std::memory_order_relaxed);
    int32_t n = s;
    if (e == End::found) n = s + (kMax - s + 1) / 2;  // one find turns spinning on
    if (e == End::timed_out) n = s - s / 8;           // a few misses in a row turn it off
    if (e == End::preempted) n = s / 2;               // two in a row turn it off
    if (n != s) score_.store(n, std::memory_order_relaxed);
    const int64_t every = trial_every_.load(std::memory_order_relaxed);
    int64_t next = every;
    if (e == End::preempted) next = every < kTrialMax / 2 ? every * 2 : kTrialMax;
    if (e == End::found && budget == kTrialBudget) next = every / 2 > kTrialMin ? every / 2 : kTrialMin;
    if (next != every) trial_every_.store(next, std::memory_order_relaxed);
  }

  /// One spin's pacing: pauses between probes (1, 2, 4, ... kMaxPauses) that end early
  /// when a cheap look sees work, and the spin's end.
  class Pace {
   public:
    Pace(int64_t now, int64_t budget) noexcept : last_(now), deadline_(now + budget) {}
    /// Pauses before the next probe, unless work_seen() (a cheap look, made between
    /// pauses) says the probe should come now.
    template <class Seen>
    void pause(Seen&& work_seen) noexcept {
      for (unsigned i = 0; i < pauses_ && !work_seen(); ++i) cpu_relax();
      if (pauses_ < kMaxPauses) pauses_ *= 2;
    }
    /// After a probe that found nothing, at `now`: true to go on; false with `why` set
    /// when the spin is over.
    bool go_on(int64_t now, End& why) noexcept {
      if (now - last_ > kPreemptGap) {
        why = End::preempted;
        return false;
      }
      if (now >= deadline_) {
        why = End::timed_out;
        return false;
      }
      last_ = now;
      return true;
    }

   private:
    int64_t last_;
    const int64_t deadline_;
    unsigned pauses_ = 1;
  };

 private:
  static constexpr int32_t kMax = 1024, kOn = 384;
  std::atomic<int32_t> score_{kMax};
  std::atomic<int64_t> next_trial_{0};
  std::atomic<int64_t> trial_every_{kTrialMin};
};

}  // namespace spindle::detail
