// spindle::Task<T> and spindle::spawn: asyncio.Task / asyncio.create_task on fibres.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <concepts>
#include <functional>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>

#include <spindle/detail/handle.hpp>
#include <spindle/detail/task_header.hpp>
#include <spindle/options.hpp>

namespace spindle {

class Runtime;

/// What spawn runs (spindle::spawn, Runtime::spawn, TaskGroup::spawn, JobScheduler::spawn):
/// fn and args are decayed and moved into the task, whose body is
/// std::invoke(std::move(fn), std::move(args)...). A call that does not satisfy it is
/// refused at compile time, naming this concept: fn does not take these arguments (a
/// missing or extra one, one of the wrong type), or the options were not passed first.
template <class F, class... Args>
concept Spawnable = std::invocable<std::decay_t<F>, std::decay_t<Args>...>;

/// A task's state, as Task::where() and the task dumps (<spindle/monitor.hpp>) see it.
enum class TaskState {
  running,    ///< a loop is running its fibre
  ready,      ///< queued to run: not started yet, or woken (see TaskWhere::started)
  suspended,  ///< waiting (at TaskWhere's file:line)
  done,       ///< ended (a dump: ended while the dump was taken)
};
/// "running", "ready", "suspended", "done".
const char* to_string(TaskState s) noexcept;

/// Where a task is: what Task::where() answers.
struct TaskWhere {
  TaskState state = TaskState::ready;
  /// false while its body has not run (state is then ready, or done for a task
  /// cancelled before it started).
  bool started = false;
  /// The suspension point (the std::source_location of the wait) it waits at when
  /// suspended, or waited at last when ready again after a wake-up; "" and 0 otherwise
  /// (not started, running, done).
  std::string function, file;
  unsigned line = 0;
};
/// "function at file:line" for a suspended task (a bare "suspended" if its wait has no
/// location); "ready, after function at file:line" for a woken one; "not started",
/// "running" or "done" otherwise.
std::string to_string(const TaskWhere& w);

/// A handle to a running fibre and to its result. Copies share the task. A task runs
/// whether or not anyone holds a handle; dropping every handle does not cancel it.
/// Every member may be called from any thread, also after the task's Runtime is
/// destroyed: every task is done by then (Runtime::shutdown ends the ones that would
/// not end cancelled).
///
/// T may be void, a move-only type (get() moves it out once; a second get() throws
/// InvalidStateError), or a reference (the task returns a reference to an object that
/// must outlive every get()).
template <class T = void>
class Task : public detail::HandleBase {
 public:
  Task() noexcept = default;
  explicit Task(detail::TaskHeader* t) noexcept : HandleBase(t) {}  // adopts a reference
  /// Any task viewed as Task<> (type-erased: done, cancel, name, get() to wait — but
  /// not its value).
  template <class U>
  requires(std::is_void_v<T> && !std::is_void_v<U>) Task(const Task<U>& other)
  noexcept : HandleBase(other) {}

  /// Waits for the task to end and returns its value, or rethrows its exception, or
  /// throws CancelledError if it was cancelled. Suspends a fibre; blocks a foreign
  /// thread. If the waiting task is cancelled meanwhile, this task is cancelled too
  /// (as awaiting an asyncio task does; use shield() to prevent it), and once it has
  /// ended the waiter gets CancelledError.
  T get(std::source_location where = std::source_location::current()) {
    core().wait_done(where);
    return result();
  }
  /// The value if done; throws InvalidStateError while pending, CancelledError if
  /// cancelled, or the task's exception.
  T result() {
    core().check_outcome("Task::result");
    return detail::take_result<T>(&core(), impl()->slot);
  }
  /// Requests cancellation: CancelledError(msg) is raised at the task's next (or current)
  /// suspension point; a task that has not started never runs its body. Returns false
  /// if the task is already done. Harmless to call twice.
  bool cancel(std::string msg = {});
  /// The task's name: the one given at spawn or set_name, else "Task-<n>".
  std::string name() const;
  /// A number unique among this process's tasks, given the first time it is asked for
  /// (by id(), name() of an unnamed task, or a task dump): the <n> of "Task-<n>" and the
  /// ID of the monitor console.
  uint64_t id() const;
  void set_name(std::string name);
  /// Where the task is: its state and, while it waits, the suspension point it waits at
  /// (TaskWhere; to_string() makes the text a dump shows). A snapshot: the task may have
  /// moved on by the time it is read.
  TaskWhere where() const;
  /// Calls fn(task) once the task is done, in a new task of its own on the caller's
  /// runtime; never inline on the completer's stack. Throws RuntimeError outside a runtime.
  /// The callback holds no reference to the task (a running task is kept by its
  /// runtime anyway); a task that never ends and has no handle left is freed with its
  /// callbacks unrun, and fn (with what it captured) is destroyed.
  template <class Fn>
  void add_done_callback(Fn fn) const {
    add_callback_erased([fn = std::move(fn)](detail::FutureCore* c) mutable {
      Task self(ShareTag{}, c);
      fn(self);
    });
  }

 private:
  Task(ShareTag t, detail::FutureCore* c) noexcept : HandleBase(t, c) {}
  detail::TaskWithResult<T>* impl() const { return static_cast<detail::TaskWithResult<T>*>(&core()); }
};

namespace detail {
bool cancel_task(FutureCore* c, std::string msg);
std::string task_name(FutureCore* c);
uint64_t task_id(FutureCore* c);
void set_task_name(FutureCore* c, std::string name);
TaskWhere task_where(FutureCore* c);
RuntimeImpl* runtime_impl(Runtime& rt) noexcept;

template <class F, class... Args>
auto make_task(F&& f, Args&&... args) {
  if constexpr (sizeof...(Args) == 0) {
    using Fn = std::decay_t<F>;
    using R = std::invoke_result_t<Fn&&>;
    return new TaskImpl<R, Fn>(std::forward<F>(f));
  } else {
    auto bound = [fn = std::forward<F>(f), ... a = std::forward<Args>(args)]() mutable -> decltype(auto) {
      return std::invoke(std::move(fn), std::move(a)...);
    };
    using Fn = decltype(bound);
    using R = std::invoke_result_t<Fn&&>;
    return new TaskImpl<R, Fn>(std::move(bound));
  }
}
template <class Impl>
using task_result_t = std::remove_cvref_t<decltype(std::declval<Impl&>().slot)>;
template <class S>
struct SlotValue;
template <class T>
struct SlotValue<ResultSlot<T>> {
  using type = T;
};

/// Makes the task that runs f(args...), not submitted yet, and returns its handle. The
/// task starts with two references: the handle's, and the scheduler's, which the call
/// that submits it takes over (submit, and a TaskGroup's or a JobScheduler's adopt, drop
/// it when they throw; the handle's goes with the handle as the exception unwinds).
template <class F, class... Args>
auto new_task(F&& f, Args&&... args) {
  auto* t = make_task(std::forward<F>(f), std::forward<Args>(args)...);
  using T = typename SlotValue<task_result_t<std::remove_pointer_t<decltype(t)>>>::type;
  // relaxed: the task is not shared yet; submitting it publishes it.
  t->refs.store(2, std::memory_order_relaxed);  // the handle's and the scheduler's
  return Task<T>(t);
}
/// The task behind a handle that new_task made, for the call that submits it.
inline TaskHeader* task_of(const HandleBase& h) noexcept { return static_cast<TaskHeader*>(h.core_ptr()); }

template <class F, class... Args>
auto spawn_on(RuntimeImpl* rt, const TaskOptions* opts, F&& f, Args&&... args) {
  auto handle = new_task(std::forward<F>(f), std::forward<Args>(args)...);
  submit(rt, task_of(handle), opts);  // on failure it drops the scheduler's reference and throws
  return handle;
}
}  // namespace detail

template <class T>
bool Task<T>::cancel(std::string msg) {
  return detail::cancel_task(&core(), std::move(msg));
}
template <class T>
std::string Task<T>::name() const {
  return detail::task_name(&core());
}
template <class T>
uint64_t Task<T>::id() const {
  return detail::task_id(&core());
}
template <class T>
void Task<T>::set_name(std::string n) {
  detail::set_task_name(&core(), std::move(n));
}
template <class T>
TaskWhere Task<T>::where() const {
  return detail::task_where(&core());
}

/// Starts fn(args...) as a new task on the calling fibre's runtime (asyncio.create_task).
/// The task is queued, not run inline. Throws RuntimeError outside a runtime or when the
/// runtime is closed. Arguments are moved into the task.
template <class F, class... Args>
requires Spawnable<F, Args...>
auto spawn(F&& fn, Args&&... args) {
  return detail::spawn_on(nullptr, nullptr, std::forward<F>(fn), std::forward<Args>(args)...);
}
/// The same with a name, a stack size or pinning (TaskOptions).
template <class F, class... Args>
requires Spawnable<F, Args...>
auto spawn(const TaskOptions& opts, F&& fn, Args&&... args) {
  return detail::spawn_on(nullptr, &opts, std::forward<F>(fn), std::forward<Args>(args)...);
}

}  // namespace spindle
