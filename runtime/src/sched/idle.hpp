// Which workers are parked and which are searching for work, and the rule for waking
// one: at most one parked worker is woken per new piece of work, and none while another
// worker is already searching (it will find the work). No thundering herd.
//
// Searchers: at most half of the workers (and at least one) search at once:
// try_start_searching counts up only below that limit, notify_work only from 0 to 1
// (shutdown's wake_all alone goes past it). Only searchers may spin (spin_policy.hpp);
// the others make one pass over the queues and park. A
// worker woken for work anyone may run wakes as a searcher; one woken for pinned work
// (that only it may run) does not: it has its work, and counting it would keep a real
// searcher from spinning.
//
// The lost-wake-up argument (Dekker style, both sides use a seq_cst fence):
//   publisher: make work visible (queue push)  ; fence ; read num_searching/num_parked
//   parker:    add itself to parked (under mu_) ; fence ; look at every queue again
// Whichever comes second sees the other's write: either the publisher sees the parked
// worker and wakes it, or the parker sees the work and does not sleep. A worker that is
// neither parked nor counted as a searcher always makes that check before it parks.
//
// A searching worker that finds work stops searching; if it was the last searcher and
// work anyone may run is still in sight, it wakes another parked worker (the publisher
// skipped the wake because it saw a searcher). The same argument covers this:
//   searcher:  stop searching (seq_cst RMW) ; fence ; look at the queues
// against the publisher's push ; fence ; read num_searching above.
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

namespace spindle::detail {

struct Worker;

class Idle {
 public:
  explicit Idle(unsigned workers) : workers_(workers) {}

  /// After new work was published that any worker may run.
  void notify_work(const std::vector<Worker*>& all) noexcept;
  /// After work was published that only `w` may run (a pinned task). Wakes w if parked.
  void notify_worker(Worker* w) noexcept;

  /// A worker with nothing to do asks to search. False: enough workers are searching
  /// already (at most half of them), so it should park instead.
  bool try_start_searching() noexcept;
  /// A searcher found work. Returns true when it was the last searcher (the caller then
  /// fences, looks at the queues, and calls notify_work if work is waiting).
  bool stop_searching() noexcept;

  /// Registers w as parked (and no longer searching, if it was). The caller then fences
  /// and re-checks every queue before sleeping.
  void park(Worker* w, bool was_searching) noexcept;
  /// How a parked worker came back: by itself (found work on re-check, or woke for I/O
  /// or a timer), or taken off the list by a notifier, which made it a searcher (work
  /// anyone may run) or not (pinned work), and whose unpark() is on its way.
  enum class Unparked { self, searcher, pinned };
  /// w stops being parked.
  Unparked unpark_self(Worker* w) noexcept;

  /// Wakes every parked worker (shutdown).
  void wake_all(const std::vector<Worker*>& all) noexcept;

  unsigned searching() const noexcept { return searching_.load(std::memory_order_seq_cst); }
  unsigned parked() const noexcept { return parked_n_.load(std::memory_order_seq_cst); }

 private:
  const unsigned workers_;
  std::atomic<unsigned> searching_{0};
  std::atomic<unsigned> parked_n_{0};
  std::mutex mu_;
  std::vector<Worker*> parked_;  // guarded by mu_
};

}  // namespace spindle::detail
