// spindle::TaskGroup (asyncio.TaskGroup) and spindle::ExceptionGroup.
//
//   TaskGroup tg;
//   auto a = tg.spawn(fetch, url1);
//   auto b = tg.spawn(fetch, url2);
//   tg.join();   // waits for both; if one failed, the other was cancelled and
//                // join() throws ExceptionGroup with every failure
//
// or, closer to `async with asyncio.TaskGroup() as tg:`, the scoped form
//
//   spindle::task_group([&](TaskGroup& tg) { tg.spawn(...); ... });
//
// which also folds an exception thrown by the block itself into the ExceptionGroup.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <spindle/errors.hpp>
#include <spindle/options.hpp>
#include <spindle/task.hpp>

namespace spindle {

class Runtime;

/// Several exceptions raised together (Python's ExceptionGroup): TaskGroup::join throws
/// one holding every failure of its children, in the order they happened. Unlike
/// CancelledError it derives from std::exception. It is not a spindle::Error: what it
/// carries are the children's exceptions, the program's own.
class ExceptionGroup : public std::exception {
 public:
  ExceptionGroup(std::string message, std::vector<std::exception_ptr> errors);
  /// "message (N sub-exception(s))".
  const char* what() const noexcept override { return what_.c_str(); }
  const std::string& message() const noexcept { return message_; }
  /// The exceptions, in the order they happened.
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return errors_; }
  std::size_t size() const noexcept { return errors_.size(); }
  /// How many of the (direct) exceptions are an E.
  template <class E>
  std::size_t count() const {
    std::size_t k = 0;
    for (const auto& e : errors_) {
      try {
        std::rethrow_exception(e);
      } catch (const E&) {
        ++k;
      } catch (...) {
      }
    }
    return k;
  }

 private:
  std::string message_;
  std::string what_;
  std::vector<std::exception_ptr> errors_;
};

/// Thrown by TaskGroup::spawn when the group no longer takes children: it has been
/// joined, or it is shutting down because a child failed (asyncio: RuntimeError).
class TaskGroupClosed : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

namespace detail {
class GroupState;
GroupState* group_create(RuntimeImpl* rt);
void group_adopt(GroupState* g, TaskHeader* t, const TaskOptions* o);
void group_join(GroupState* g, std::source_location where);
void group_destroy(GroupState* g, bool unwinding, std::source_location where) noexcept;
[[noreturn]] void group_fail_body(GroupState* g, std::exception_ptr body_error, std::source_location where);
std::size_t group_size(GroupState* g) noexcept;
struct GroupAccess;
}  // namespace detail

/// A set of child tasks with one fate (asyncio.TaskGroup). The first child to fail with
/// an exception (not a cancellation) cancels all the others; join() waits for every
/// child and then throws an ExceptionGroup of all failures. A cancelled child is never a
/// failure. Groups nest: a child may own a group of its own.
///
/// Thread rules: spawn() may be called from any task of the runtime (children may spawn
/// siblings) or from a foreign thread for a group made with a Runtime; join() from one
/// task (or thread) at a time. The destructor must not run on a worker thread outside a
/// task.
///
/// C++ shape: asyncio also cancels the task running the `async with` block when a child
/// fails, and hides that cancellation at the block's end. spindle has no way to undo a
/// cancellation, so the owner is not interrupted: it learns of the failure at join() —
/// or at its next spawn(), which throws TaskGroupClosed (task_group() below drops that
/// one, as the children's failures explain it).
class TaskGroup {
 public:
  /// A group on the calling task's runtime. Throws RuntimeError outside a runtime.
  TaskGroup();
  /// A group whose children run on `rt` (spawn() may then be called from any thread).
  explicit TaskGroup(Runtime& rt);
  /// Waits for every child, as join() does, but cannot throw: failures not collected by
  /// join() are reported by the runtime as never retrieved. When the destructor runs
  /// because an exception is unwinding the owner, it first cancels every child (asyncio
  /// aborts the group when the block raises). Never cancellable: a cancellation of the
  /// owner meanwhile cancels the children and stays pending.
  ~TaskGroup();
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  /// Starts fn(args...) as a child task and returns its handle. Throws TaskGroupClosed
  /// (a RuntimeError) once the group was joined or is shutting down after a failure, and
  /// RuntimeError if the runtime is shut down; fn then never runs.
  template <class F, class... Args>
  requires Spawnable<F, Args...>
  auto spawn(F&& fn, Args&&... args) { return spawn_with(nullptr, std::forward<F>(fn), std::forward<Args>(args)...); }
  /// The same with TaskOptions (name, stack size, pinning).
  template <class F, class... Args>
  requires Spawnable<F, Args...>
  auto spawn(const TaskOptions& opts, F&& fn, Args&&... args) {
    return spawn_with(&opts, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// Waits until every child has ended (children spawned meanwhile included), then
  /// closes the group. Throws ExceptionGroup if any child failed. If the calling task is
  /// cancelled meanwhile, every child is cancelled and awaited, then CancelledError is
  /// thrown (unless children failed: then the ExceptionGroup, and the cancellation stays
  /// pending). A second join() returns at once. Throws InvalidStateError while another
  /// task is joining.
  void join(std::source_location where = std::source_location::current()) { detail::group_join(st_, where); }

  /// Children that have not ended yet.
  std::size_t size() const noexcept { return detail::group_size(st_); }

 private:
  template <class F, class... Args>
  auto spawn_with(const TaskOptions* opts, F&& fn, Args&&... args) {
    auto handle = detail::new_task(std::forward<F>(fn), std::forward<Args>(args)...);
    detail::group_adopt(st_, detail::task_of(handle), opts);  // takes the scheduler's reference
    return handle;
  }

  friend struct detail::GroupAccess;
  detail::GroupState* st_;
  int uncaught_ = std::uncaught_exceptions();
};

namespace detail {
struct GroupAccess {
  static GroupState* state(TaskGroup& g) noexcept { return g.st_; }
};
}  // namespace detail

/// `async with asyncio.TaskGroup() as tg:` — runs body(tg) in the calling task, then
/// joins the group and returns body's value. If body throws, the children are cancelled
/// and awaited, and an ExceptionGroup holding the children's failures and body's
/// exception is thrown (a CancelledError from body is rethrown as is when no child
/// failed; a TaskGroupClosed from this group's own spawn is left out). Throws as join().
template <class F>
requires std::is_invocable_v<F, TaskGroup&>
auto task_group(F&& body, std::source_location where = std::source_location::current()) {
  TaskGroup tg;
  using R = std::invoke_result_t<F, TaskGroup&>;
  bool body_done = false;
  try {
    if constexpr (std::is_void_v<R>) {
      std::invoke(std::forward<F>(body), tg);
      body_done = true;
      tg.join(where);
    } else {
      R r = std::invoke(std::forward<F>(body), tg);
      body_done = true;
      tg.join(where);
      return r;
    }
  } catch (...) {
    if (body_done) throw;  // join's own ExceptionGroup / CancelledError
    detail::group_fail_body(detail::GroupAccess::state(tg), std::current_exception(), where);
  }
}

}  // namespace spindle
