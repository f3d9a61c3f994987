#include "timer_heap.hpp"

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

void TimerHeap::push(TimerEntry* e) {
  heap_.push_back({e->deadline, e});
  sift_up(heap_.size() - 1);
  // Cancelled entries are only dropped at the top; a periodic sweep bounds how many can
  // pile up below it (insert-then-cancel workloads never let them reach the top).
  if (++pushes_since_sweep_ >= 1024 && pushes_since_sweep_ >= heap_.size() / 2) sweep();
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
  return top;
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
  pushes_since_sweep_ = 0;
  auto dead = [](const Slot& s) {
    if (s.e->state.load(std::memory_order_acquire) != TimerEntry::cancelled) return false;
    s.e->unref();
    return true;
  };
  heap_.erase(std::remove_if(heap_.begin(), heap_.end(), dead), heap_.end());
  if (heap_.size() > 1)
    for (std::size_t i = (heap_.size() - 2) / kArity + 1; i-- > 0;) sift_down(i);
}

}  // namespace spindle::detail
