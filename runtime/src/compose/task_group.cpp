// TaskGroup: the children of one group, their failures, and the one task joining them.
//
// GroupState owns:  one GroupNode per child that has not ended (the `live` list) and one
//                   per child that failed (the `failed` list, in the order they failed).
//                   A node is linked into its child's waiter list when the child is
//                   adopted (before the child is submitted, so it cannot miss the end),
//                   and fires when the child's outcome is published.
// Threads:          every field is guarded by `lock` (a SpinLock: never held across a
//                   suspension). fire() runs on the completer's thread.
// Invariants:       live == length of the live list. Once `aborting`, every child in
//                   the live list has been asked to cancel, and no child is adopted.
//                   Once `finished`, no child is adopted and live == 0.
//                   The state is destroyed only after live reached 0 under the lock and
//                   the joiner's notify has landed; a firing node touches the state
//                   only before its unlock, so nothing touches freed memory.
// Shutdown of a group (join or destructor), in order:
//   1. (destructor while unwinding, or the joiner cancelled) abort: cancel every child;
//   2. wait until live == 0, then mark the group finished under the same lock hold;
//   3. join: collect the failures (marked retrieved) into an ExceptionGroup;
//      destructor: drop them unretrieved, so that the runtime reports them.
#include <spindle/task_group.hpp>

#include <spindle/detail/parked_waiter.hpp>
#include <spindle/detail/waiting_core.hpp>
#include <spindle/runtime.hpp>

#include <mutex>

#include "sched/runtime_impl.hpp"

namespace spindle {

ExceptionGroup::ExceptionGroup(std::string message, std::vector<std::exception_ptr> errors)
    : message_(std::move(message)), errors_(std::move(errors)) {
  what_ =
      message_ + " (" + std::to_string(errors_.size()) + (errors_.size() == 1 ? " sub-exception)" : " sub-exceptions)");
}

namespace detail {

namespace {
struct GroupNode final : DoneNode {
  GroupState* group;
  Task<> task;                 // a reference to the child
  GroupNode* gprev = nullptr;  // links in the group's live or failed list
  GroupNode* gnext = nullptr;
  GroupNode(GroupState* g, TaskHeader* t) : group(g) {
    t->ref();
    task = Task<>(t);
  }
  void fire() noexcept override;
};
}  // namespace

class GroupState {
 public:
  explicit GroupState(RuntimeImpl* r) noexcept : rt(r) {}

  void adopt(TaskHeader* t, const TaskOptions* o);
  void on_child_done(GroupNode* n) noexcept;
  // Waits until live == 0 and marks the group finished. Returns true if the calling
  // task's cancellation was seen (the children were then aborted); it stays pending.
  bool wait_until_empty(bool cancellable, std::source_location where);
  void join(std::source_location where);
  void destroy(bool unwinding, std::source_location where) noexcept;
  [[noreturn]] void fail_body(std::exception_ptr body_error, std::source_location where);
  std::size_t size() noexcept {
    std::lock_guard g(lock);
    return live;
  }

 private:
  void abort_locked() noexcept;
  void push_live_locked(GroupNode* n) noexcept;
  void remove_live_locked(GroupNode* n) noexcept;
  std::vector<std::exception_ptr> take_failures(bool retrieve);

  RuntimeImpl* const rt;
  SpinLock lock;
  GroupNode* live_head = nullptr;
  std::size_t live = 0;
  GroupNode* failed_head = nullptr;
  GroupNode* failed_tail = nullptr;
  bool joining = false;
  bool finished = false;
  bool aborting = false;
  Waiter* joiner = nullptr;
};

void GroupNode::fire() noexcept { group->on_child_done(this); }

void GroupState::push_live_locked(GroupNode* n) noexcept {
  n->gprev = nullptr;
  n->gnext = live_head;
  if (live_head) live_head->gprev = n;
  live_head = n;
  ++live;
}

void GroupState::remove_live_locked(GroupNode* n) noexcept {
  if (n->gprev)
    n->gprev->gnext = n->gnext;
  else
    live_head = n->gnext;
  if (n->gnext) n->gnext->gprev = n->gprev;
  n->gprev = n->gnext = nullptr;
  --live;
}

void GroupState::abort_locked() noexcept {
  aborting = true;
  for (GroupNode* n = live_head; n; n = n->gnext) {
    try {
      cancel_task(n->task.core_ptr(), {});
    } catch (...) {  // an empty message allocates nothing: cannot fail
    }
  }
}

void GroupState::adopt(TaskHeader* t, const TaskOptions* o) {
  GroupNode* node;
  try {
    node = new GroupNode(this, t);
  } catch (...) {
    t->unref();  // the reference meant for the scheduler
    throw;
  }
  {
    std::unique_lock g(lock);
    if (finished || aborting) {
      const bool was_finished = finished;
      g.unlock();
      delete node;
      t->unref();
      throw TaskGroupClosed(was_finished ? "TaskGroup::spawn: the group is finished (joined)"
                                         : "TaskGroup::spawn: the group is shutting down (a child failed)");
    }
    (void)link_done_node(t, node);  // t is not submitted yet, so it cannot be done
    push_live_locked(node);
  }
  try {
    submit(rt, t, o);
  } catch (...) {
    // submit dropped the scheduler's reference: t will never run, nor end. Forget it.
    Waiter* wake;
    {
      std::lock_guard g(lock);
      (void)unlink_done_node(t, node);
      remove_live_locked(node);
      wake = live == 0 ? std::exchange(joiner, nullptr) : nullptr;
    }
    if (wake) wake->notify();
    delete node;
    throw;
  }
}

void GroupState::on_child_done(GroupNode* n) noexcept {
  const bool failed = n->task.core_ptr()->status() == Status::exception;
  lock.lock();
  remove_live_locked(n);
  if (failed) {
    if (failed_tail)
      failed_tail->gnext = n;
    else
      failed_head = n;
    failed_tail = n;
    if (!aborting) abort_locked();  // the first failure cancels the rest
  }
  Waiter* wake = live == 0 ? std::exchange(joiner, nullptr) : nullptr;
  lock.unlock();  // the last touch of the group's memory
  if (wake) wake->notify();
  if (!failed) delete n;
}

bool GroupState::wait_until_empty(bool cancellable, std::source_location where) {
  bool saw_cancel = false;
  lock.lock();
  while (live > 0) {
    Waiter w;
    joiner = &w;
    lock.unlock();
    // The last child to finish takes w and notifies it.
    const Waiter::Outcome o =
        wait_parked(w, take_back_slot(lock, joiner, w), cancellable && !saw_cancel, where).outcome;
    lock.lock();
    if (o == Waiter::Outcome::cancelled) {
      saw_cancel = true;  // from now on wait without cancellation; it stays pending
      if (!aborting) abort_locked();
    }
  }
  finished = true;
  lock.unlock();
  return saw_cancel;
}

std::vector<std::exception_ptr> GroupState::take_failures(bool retrieve) {
  std::vector<std::exception_ptr> errors;
  GroupNode* list;
  {
    std::lock_guard g(lock);
    list = std::exchange(failed_head, nullptr);
    failed_tail = nullptr;
  }
  while (list) {
    GroupNode* n = list;
    list = n->gnext;
    if (retrieve) {
      try {
        errors.push_back(n->task.exception());  // marks it retrieved
      } catch (...) {
        // No memory for the list: this one is left to the runtime's report.
      }
    }
    delete n;  // drops our reference to the child
  }
  return errors;
}

void GroupState::join(std::source_location where) {
  {
    std::unique_lock g(lock);
    if (finished) return;
    if (joining) {
      g.unlock();
      throw InvalidStateError("TaskGroup::join: another task is already joining this group");
    }
    joining = true;
  }
  const bool cancelled = wait_until_empty(true, where);
  std::vector<std::exception_ptr> errors = take_failures(true);
  if (!errors.empty()) throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors));
  if (cancelled) raise_own_cancel();
}

void GroupState::destroy(bool unwinding, std::source_location where) noexcept {
  {
    std::lock_guard g(lock);
    if (!finished && unwinding && !aborting) abort_locked();
  }
  try {
    (void)wait_until_empty(true, where);
  } catch (...) {  // wait_until_empty throws nothing on these paths; be safe
  }
  (void)take_failures(false);  // unretrieved: reported when the children are freed
}

void GroupState::fail_body(std::exception_ptr body_error, std::source_location where) {
  {
    std::lock_guard g(lock);
    if (!aborting && !finished) abort_locked();
  }
  (void)wait_until_empty(true, where);
  std::vector<std::exception_ptr> errors = take_failures(true);
  bool body_cancelled = false;
  bool body_closed = false;
  try {
    std::rethrow_exception(body_error);
  } catch (const CancelledError&) {
    body_cancelled = true;
  } catch (const TaskGroupClosed&) {
    body_closed = true;
  } catch (...) {
  }
  if (errors.empty() && (body_cancelled || body_closed)) std::rethrow_exception(body_error);
  if (!body_cancelled && !body_closed) errors.push_back(body_error);
  throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors));
}

// ---- the functions task_group.hpp calls ----------------------------------------------------

GroupState* group_create(RuntimeImpl* rt) {
  if (!rt) rt = current_runtime();
  if (!rt) throw RuntimeError("TaskGroup: no running runtime on this thread (pass a Runtime)");
  return new GroupState(rt);
}
void group_adopt(GroupState* g, TaskHeader* t, const TaskOptions* o) { g->adopt(t, o); }
void group_join(GroupState* g, std::source_location where) { g->join(where); }
void group_destroy(GroupState* g, bool unwinding, std::source_location where) noexcept {
  g->destroy(unwinding, where);
  delete g;
}
void group_fail_body(GroupState* g, std::exception_ptr body_error, std::source_location where) {
  g->fail_body(std::move(body_error), where);
}
std::size_t group_size(GroupState* g) noexcept { return g->size(); }

}  // namespace detail

TaskGroup::TaskGroup() : st_(detail::group_create(nullptr)) {}
TaskGroup::TaskGroup(Runtime& rt) : st_(detail::group_create(rt.impl())) {}
TaskGroup::~TaskGroup() {
  detail::group_destroy(st_, std::uncaught_exceptions() > uncaught_, std::source_location::current());
}

}  // namespace spindle
