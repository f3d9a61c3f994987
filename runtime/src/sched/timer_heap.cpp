#include "sched/timer_heap.hpp"

#include <time.h>

#include <algorithm>
#include <climits>

namespace spindle::detail {

int64_t monotonic_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void TimerEntry::unref() noexcept {
  // acq_rel: as for any reference count; the final drop sees every owner's writes.
  if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    if (task) task->unref();
    delete this;
  }
}

TimerHeap::~TimerHeap() {
  for (const Slot& s : heap_) s.e->unref();
}

void TimerHeap::cancel_all() noexcept {
  for (const Slot& s : heap_) {
    s.e->cancel();
    s.e->unref();
  }
  heap_.clear();
  note_size();
}

void TimerHeap::push(TimerEntry* e) {
  heap_.push_back({e->deadline, e});
  sift_up(heap_.size() - 1);
  note_size();
  // Cancelled entries are only dropped at the top; a periodic sweep bounds how many can
  // pile up below it (insert-then-cancel workloads never let them reach the top).
  if (++pushes_since_look_ >= 1024 && pushes_since_look_ >= heap_.size() / 2) maybe_sweep();
}

void TimerHeap::maybe_sweep() noexcept {
  pushes_since_look_ = 0;
  // A sweep loads every entry, and with many timers each load is a cache miss: wasted
  // where few were cancelled (sleeps, timeouts that fire). So look at kProbes entries
  // spread over the heap (a different set each time) and sweep only if a quarter of them
  // are cancelled. Where half the heap is cancelled, 16 probes find fewer than 4 about
  // one time in a hundred, and the next look comes after another size/2 pushes.
  constexpr std::size_t kProbes = 16;
  const std::size_t n = heap_.size();
  probe_shift_ = probe_shift_ * 1103515245u + 12345u;  // any cheap sequence will do
  std::size_t dead = 0;
  for (std::size_t k = 0; k < kProbes; ++k) {
    const std::size_t i = (k * n / kProbes + probe_shift_ % (n / kProbes + 1)) % n;
    dead += heap_[i].e->state.load(std::memory_order_acquire) == TimerEntry::cancelled;
  }
  if (dead * 4 >= kProbes) sweep();
}

int64_t TimerHeap::next_deadline() noexcept {
  while (!heap_.empty()) {
    const Slot& top = heap_.front();
    if (top.e->state.load(std::memory_order_acquire) != TimerEntry::cancelled) return top.deadline;
    pop_top()->unref();
  }
  return INT64_MAX;
}

TimerEntry* TimerHeap::pop_top() noexcept {
  TimerEntry* top = heap_.front().e;
  heap_.front() = heap_.back();
  heap_.pop_back();
  if (!heap_.empty()) sift_down(0);
  note_size();
  return top;
}

bool TimerHeap::moved_or_dropped(TimerEntry* e, int64_t now) noexcept {
  // acquire: pairs with the task's release of `want`, so a deadline it set is read whole.
  int64_t w = e->want.load(std::memory_order_acquire);
  for (;;) {
    if (w == 0) {
      // No wait uses it: drop it (the task's next timed wait arms a new one). acq_rel:
      // the task's CAS 0 -> D fails from now on, so it never waits on a dropped entry.
      if (e->want.compare_exchange_weak(w, TimerEntry::kRetired, std::memory_order_acq_rel)) {
        e->unref();
        return true;
      }
      continue;  // the task took it meanwhile (w reloaded)
    }
    if (w <= now) return false;  // the wait that uses it is due
    // Its wait ends later than this key: move it there. acq_rel: claims it against the
    // task's CAS D -> 0 (which then fails, and the task gives the entry up).
    if (e->want.compare_exchange_weak(w, TimerEntry::kMoving, std::memory_order_acq_rel)) {
      e->deadline = w;
      heap_.push_back({w, e});  // it was just popped: the capacity is there, no allocation
      sift_up(heap_.size() - 1);
      note_size();
      // release: the new key is written before a task can see the entry unused again.
      e->want.store(w, std::memory_order_release);
      return true;
    }
  }
}

void TimerHeap::sift_up(std::size_t i) noexcept {
  const Slot s = heap_[i];
  while (i > 0) {
    const std::size_t p = (i - 1) / kArity;
    if (heap_[p].deadline <= s.deadline) break;
    heap_[i] = heap_[p];
    i = p;
  }
  heap_[i] = s;
}

void TimerHeap::sift_down(std::size_t i) noexcept {
  const std::size_t n = heap_.size();
  const Slot s = heap_[i];
  for (;;) {
    const std::size_t first = kArity * i + 1;
    if (first >= n) break;
    const std::size_t last = first + kArity < n ? first + kArity : n;
    std::size_t c = first;
    for (std::size_t k = first + 1; k < last; ++k)
      if (heap_[k].deadline < heap_[c].deadline) c = k;
    if (s.deadline <= heap_[c].deadline) break;
    heap_[i] = heap_[c];
    i = c;
  }
  heap_[i] = s;
}

void TimerHeap::sweep() noexcept {
  auto dead = [](const Slot& s) {
    if (s.e->state.load(std::memory_order_acquire) != TimerEntry::cancelled) return false;
    s.e->unref();
    return true;
  };
  heap_.erase(std::remove_if(heap_.begin(), heap_.end(), dead), heap_.end());
  note_size();
  if (heap_.size() > 1)
    for (std::size_t i = (heap_.size() - 2) / kArity + 1; i-- > 0;) sift_down(i);
}

}  // namespace spindle::detail
