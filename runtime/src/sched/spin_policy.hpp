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
//     others make one pass over the queues and park.
//   - A spin lasts at most kBudget (20 µs), with a growing pause between probes (of
//     other workers' queues); between pauses it looks at its own inbox and the global
//     queue's count, so work handed to it is taken at once.
//   - It spins only while spinning has paid recently: a runtime-wide score, raised by a
//     spin that found work and lowered by one that did not, decides.
//   - A spin ends at once when the worker sees it was preempted: a gap between two
//     probes far longer than a probe (kPreemptGap) means the OS ran something else on
//     this CPU. That lowers the score the most.
//   - While the score says no, one idle worker at a time may make a trial spin, at most
//     one per kTrialEvery across the runtime, for kTrialBudget: longer than a wake-up,
//     so that two loops that hand work back and forth (each parks, the other wakes it)
//     can find out that spinning would now pay. Their wake-ups are slower than kBudget,
//     so ordinary spins would only ever see them miss.
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
  static constexpr int64_t kTrialEvery = 5'000'000;  // ns: at most one trial per this
  static constexpr int64_t kPreemptGap = 10'000;     // ns between probes: we were preempted
  static constexpr unsigned kMaxPauses = 32;         // pauses between probes, at most

  enum class End { found, timed_out, preempted };

  /// How long a counted searcher that has just made a pass in vain spins from `now`
  /// (monotonic ns); 0: it parks at once.
  int64_t budget(int64_t now) noexcept {
    // relaxed: a hint (see above).
    if (score_.load(std::memory_order_relaxed) >= kOn) return kBudget;
    int64_t next = next_trial_.load(std::memory_order_relaxed);
    if (now < next) return 0;
    // relaxed: the CAS only hands the trial to one worker; it orders nothing else.
    if (!next_trial_.compare_exchange_strong(next, now + kTrialEvery, std::memory_order_relaxed)) return 0;
    return kTrialBudget;
  }

  /// How a spin allowed by budget() ended.
  void record(End e) noexcept {
    const int32_t s = score_.load(std::memory_order_relaxed);
    int32_t n = s;
    switch (e) {
      case End::found:
        n = s + (kMax - s + 1) / 2;
        break;  // one find turns spinning on
      case End::timed_out:
        n = s - s / 8;
        break;  // a few misses in a row turn it off
      case End::preempted:
        n = s / 4;
        break;  // the CPUs are oversubscribed
    }
    if (n != s) score_.store(n, std::memory_order_relaxed);  // relaxed: a hint
  }

  bool spinning() const noexcept { return score_.load(std::memory_order_relaxed) >= kOn; }

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
};

}  // namespace spindle::detail
