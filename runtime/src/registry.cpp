#include "registry.hpp"

#include "frame.hpp"

namespace spindle::detail {

void RegistryShard::add(TaskFrame* f) noexcept {
  std::lock_guard lk(mu_);
  f->shard = this;
  f->prev = nullptr;
  f->next = head_;
  if (head_) head_->prev = f;
  head_ = f;
}

void RegistryShard::remove(TaskFrame* f) noexcept {
  std::lock_guard lk(mu_);
  if (f->prev) f->prev->next = f->next; else head_ = f->next;
  if (f->next) f->next->prev = f->prev;
  f->prev = f->next = nullptr;
}

void RegistryShard::snapshot(std::vector<TaskHeader*>& out) {
  std::lock_guard lk(mu_);
  for (TaskFrame* f = head_; f; f = f->next) {
    f->task->ref();
    out.push_back(f->task);
  }
}

}  // namespace spindle::detail
