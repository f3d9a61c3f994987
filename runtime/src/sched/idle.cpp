#include "sched/idle.hpp"

#include <algorithm>

#include "sched/worker.hpp"

namespace spindle::detail {

void Idle::notify_work(const std::vector<Worker*>& /*all*/) noexcept {
  // seq_cst fence: orders the caller's publication of work before our reads of the
  // counters (see the Dekker argument in idle.hpp; pairs with the fence after park()).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (searching_.load(std::memory_order_relaxed) != 0) return;  // a searcher will find it
  if (parked_n_.load(std::memory_order_relaxed) == 0) return;   // everyone is busy
  Worker* w = nullptr;
  {
    std::lock_guard lk(mu_);
    if (parked_.empty()) return;
    // It wakes up as a searcher, taking the place from 0 to 1 (seq_cst, as every change
    // of the count): if a worker became a searcher since our look, it will find the
    // work, and the limit of try_start_searching holds.
    unsigned none = 0;
    if (!searching_.compare_exchange_strong(none, 1, std::memory_order_seq_cst)) return;
    w = parked_.back();
    parked_.pop_back();
    w->in_parked_list = false;
    w->woken_searching = true;
    w->parked.store(false, std::memory_order_relaxed);
    parked_n_.fetch_sub(1, std::memory_order_seq_cst);
  }
  w->reactor.unpark();
}

void Idle::notify_worker(Worker* w) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // as in notify_work
  // Fast path: a worker that is not parked looks at its inbox anyway. relaxed is enough
  // after the fence: `parked` is set under mu_ before the parker's own fence.
  if (!w->parked.load(std::memory_order_relaxed)) return;
  bool wake = false;
  {
    std::lock_guard lk(mu_);
    if (w->in_parked_list) {
      parked_.erase(std::find(parked_.begin(), parked_.end(), w));
      w->in_parked_list = false;
      w->woken_searching = false;  // it has its work: not a searcher (idle.hpp)
      w->parked.store(false, std::memory_order_relaxed);
      parked_n_.fetch_sub(1, std::memory_order_seq_cst);
      wake = true;
    }
  }
  // A worker that is not parked is running or spinning and looks at its inbox anyway.
  if (wake) w->reactor.unpark();
}

bool Idle::try_start_searching() noexcept {
  // At most half of the workers (and at least one) search at once: more spinners would
  // only contend for the same queues.
  const unsigned limit = std::max(1u, workers_ / 2);
  unsigned s = searching_.load(std::memory_order_relaxed);
  while (s < limit) {
    // seq_cst: the searching count is read by notifiers after their fence.
    if (searching_.compare_exchange_weak(s, s + 1, std::memory_order_seq_cst)) return true;
  }
  return false;
}

bool Idle::stop_searching() noexcept { return searching_.fetch_sub(1, std::memory_order_seq_cst) == 1; }

void Idle::park(Worker* w, bool was_searching) noexcept {
  std::lock_guard lk(mu_);
  parked_.push_back(w);
  w->in_parked_list = true;
  w->parked.store(true, std::memory_order_relaxed);  // ordered by the fence after park()
  parked_n_.fetch_add(1, std::memory_order_seq_cst);
  if (was_searching) searching_.fetch_sub(1, std::memory_order_seq_cst);
}

Idle::Unparked Idle::unpark_self(Worker* w) noexcept {
  std::lock_guard lk(mu_);
  if (!w->in_parked_list) return w->woken_searching ? Unparked::searcher : Unparked::pinned;
  parked_.erase(std::find(parked_.begin(), parked_.end(), w));
  w->in_parked_list = false;
  w->parked.store(false, std::memory_order_relaxed);
  parked_n_.fetch_sub(1, std::memory_order_seq_cst);
  return Unparked::self;
}

void Idle::wake_all(const std::vector<Worker*>& all) noexcept {
  {
    std::lock_guard lk(mu_);
    for (Worker* w : parked_) {
      w->in_parked_list = false;
      w->woken_searching = true;  // counted below
      w->parked.store(false, std::memory_order_relaxed);
    }
    parked_n_.fetch_sub(static_cast<unsigned>(parked_.size()), std::memory_order_seq_cst);
    searching_.fetch_add(static_cast<unsigned>(parked_.size()), std::memory_order_seq_cst);
    parked_.clear();
  }
  for (Worker* w : all) w->reactor.unpark();
}

}  // namespace spindle::detail
