// The task object: a FutureCore plus the link to its fibre. Kept small on purpose (40
// bytes plus the value and the callable): a task that has not started has no stack,
// and a million such tasks should cost a million small objects.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <functional>
#include <type_traits>

#include <spindle/detail/core.hpp>
#include <spindle/options.hpp>

namespace spindle::detail {

struct TaskHeader : FutureCore {
  /// The fibre's frame, on the fibre's own stack; set while the fibre exists. Written by
  /// the fibre at start and end; read by whoever holds the task in the QUEUED/RUNNING state.
  TaskFrame* frame = nullptr;
  explicit TaskHeader(const CoreOps* o) noexcept : FutureCore(o, kIsTask) {}
};

// A million spawned tasks must fit in 64 MB: 32 bytes is mimalloc's size class below 48.
static_assert(sizeof(TaskHeader) == 32, "TaskHeader grew past 32 bytes");

void destroy_task_common(TaskHeader* t) noexcept;  // reports, frees extra

template <class T>
struct TaskWithResult : TaskHeader {
  [[no_unique_address]] ResultSlot<T> slot;
  using TaskHeader::TaskHeader;
};

// Where a task keeps its callable until the body has run.
template <class F, bool Empty = std::is_empty_v<F>&& std::is_trivially_destructible_v<F>>
struct FnSlot {
  ResultSlot<F> s;
  template <class G>
  explicit FnSlot(G&& g) {
    s.emplace(std::forward<G>(g));
  }
  F& get() noexcept { return s.get(); }
  void destroy() noexcept { s.destroy(); }
};
// A stateless callable (a lambda without captures) takes no room at all: the task of
// `spawn([] { ... })` is then just its 32-byte header.
template <class F>
struct FnSlot<F, true> {
  [[no_unique_address]] F f;
  template <class G>
  explicit FnSlot(G&& g) : f(std::forward<G>(g)) {}
  F& get() noexcept { return f; }
  void destroy() noexcept {}
};

template <class T, class F>
struct TaskImpl final : TaskWithResult<T> {
  [[no_unique_address]] FnSlot<F> fn;  // alive until the body has run, or the task ended unstarted

  template <class G>
  explicit TaskImpl(G&& g) : TaskWithResult<T>(&ops_table), fn(std::forward<G>(g)) {}

  static void run(TaskHeader* h) {
    auto* self = static_cast<TaskImpl*>(h);
    struct DropFn {  // the callable's captures are released as soon as the body ends
      TaskImpl* s;
      ~DropFn() { s->fn.destroy(); }
    } drop{self};
    if constexpr (std::is_void_v<T>) {
      std::invoke(std::move(self->fn.get()));
    } else if constexpr (std::is_reference_v<T>) {
      self->slot.emplace(std::invoke(std::move(self->fn.get())));
    } else {
      self->slot.emplace(std::invoke(std::move(self->fn.get())));
    }
  }
  static void drop_fn(TaskHeader* h) noexcept { static_cast<TaskImpl*>(h)->fn.destroy(); }
  static void destroy(FutureCore* c) noexcept {
    auto* self = static_cast<TaskImpl*>(c);
    const uint32_t w = c->word.load(std::memory_order_acquire);
    // The callable is still there unless the body ran or the task ended unstarted.
    if (!(c->sched.load(std::memory_order_acquire) & (kStarted | kFnDropped))) self->fn.destroy();
    if (((w & kStatusMask) >> kStatusShift) == uint32_t(Status::result) && !(w & kMovedOut)) self->slot.destroy();
    destroy_task_common(self);
    delete self;
  }
  static constexpr CoreOps ops_table{&destroy, &run, &drop_fn};
};

/// Hands a new task (holding two references: the caller's handle and the scheduler's)
/// to a runtime: `rt` may be null, meaning the runtime of the calling fibre. Throws
/// RuntimeError if there is none or it is closed (the task is then released).
void submit(RuntimeImpl* rt, TaskHeader* t, const TaskOptions* opts);

}  // namespace spindle::detail
