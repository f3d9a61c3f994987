// Waiting on many (asyncio's "Waiting Primitives", "Timeouts", gather and shield):
// wait_for, timeout, wait, gather, gather_settled, as_completed, shield.
//
// Each takes handles (Task<T> or Future<T>); wait_for, timeout, gather(a, b, ...) and
// shield also take callables, which they start as tasks first. Semantics are asyncio's
// (Python 3.12 documentation); where C++ needs another shape the function says so.
//
// Every function here may be called from a fibre of a runtime (it suspends) or from a
// thread outside every runtime (it blocks that thread; such a thread cannot be
// cancelled). Those that start callables need a runtime to start them in: from a
// foreign thread they throw RuntimeError (spawn on Runtime::spawn first, then pass the
// handle). Each throws InvalidStateError when given an empty handle.
//
// Cancellation follows asyncio: the caller's CancelledError is raised at these waits;
// wait_for, timeout and gather pass it on to what they wait for (and wait for it to
// end), while wait, as_completed and shield leave what they wait for alone.
//
// Timeouts are TimeLimits (time_limit.hpp), read as asyncio reads them: none waits
// until done, zero or negative has already passed (after the one look asyncio takes),
// a duration too large for the clock never passes. Arguments come in asyncio's order:
// what is waited on first and the timeout after it (wait_for(aw, timeout),
// wait(aws, {.timeout}), as_completed(aws, timeout)); where asyncio has a block (`async
// with timeout(delay):`) the C++ callable takes the block's place, last:
// timeout(delay, fn), timeout_at(when, fn), as call_later(delay, cb) does.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <spindle/detail/waiting_core.hpp>
#include <spindle/errors.hpp>
#include <spindle/future.hpp>
#include <spindle/result.hpp>
#include <spindle/task.hpp>
#include <spindle/time_limit.hpp>

namespace spindle {

namespace detail {
template <class H>
struct handle_traits : std::false_type {};
template <class T>
struct handle_traits<Task<T>> : std::true_type {
  using value_type = T;
};
template <class T>
struct handle_traits<Future<T>> : std::true_type {
  using value_type = T;
};
}  // namespace detail

/// Task<T> or Future<T> (any cv/ref qualification).
template <class H>
concept Awaitable = detail::handle_traits<std::remove_cvref_t<H>>::value;

/// The value type T of a Task<T> / Future<T>.
template <class H>
using awaited_t = typename detail::handle_traits<std::remove_cvref_t<H>>::value_type;

/// What gather hands back for a T: T itself, std::monostate for void, and for a
/// reference T a std::reference_wrapper (a tuple or vector of references would dangle).
template <class T>
using gathered_t = std::conditional_t<
    std::is_void_v<T>, std::monostate,
    std::conditional_t<std::is_reference_v<T>, std::reference_wrapper<std::remove_reference_t<T>>, T>>;

namespace detail {
// A handle for x: x itself, or a new task running x().
template <class X>
auto as_handle(X&& x) {
  if constexpr (Awaitable<X>) {
    return std::remove_cvref_t<X>(std::forward<X>(x));
  } else {
    return spawn(std::forward<X>(x));
  }
}
template <class X>
concept HandleOrCallable = Awaitable<X> || std::is_invocable_v<std::decay_t<X>>;

inline FutureCore* checked_core(const HandleBase& h) {
  if (!h) throw InvalidStateError("spindle: empty Task/Future handle (default-constructed or moved from)");
  return h.core_ptr();
}
// The value of a done handle, as gather hands it back.
template <class H>
gathered_t<awaited_t<H>> take_gathered(H& h) {
  using T = awaited_t<H>;
  if constexpr (std::is_void_v<T>) {
    h.result();
    return std::monostate{};
  } else if constexpr (std::is_reference_v<T>) {
    return std::ref(h.result());
  } else {
    return h.result();
  }
}
// Copies the handles of a range into a vector, dropping repeats (asyncio.wait and
// as_completed take a set) when `unique`.
template <class R>
auto collect_handles(R&& r, bool unique) {
  using H = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  std::vector<H> out;
  if constexpr (std::ranges::sized_range<R>) out.reserve(std::ranges::size(r));
  std::unordered_set<FutureCore*> seen;
  for (auto&& h : r) {
    FutureCore* c = checked_core(h);
    if (unique && !seen.insert(c).second) continue;
    out.push_back(h);
  }
  return out;
}
template <class H>
std::vector<FutureCore*> cores_of(const std::vector<H>& hs) {
  std::vector<FutureCore*> cs;
  cs.reserve(hs.size());
  for (const auto& h : hs) cs.push_back(h.core_ptr());
  return cs;
}
/// The exception a done future ended with, as an exception_ptr (a CancelledError for a
/// cancelled one); marks it retrieved. nullptr if it ended with a value.
std::exception_ptr outcome_error(FutureCore* c);

// Cancels and joins a task this library started, if the call leaves by an exception
// before the task ended (so fn's captures never outlive the call).
struct JoinGuard {
  FutureCore* c;
  std::source_location where;
  ~JoinGuard() { cancel_and_join(c, where); }
};
}  // namespace detail

// ---- wait_for / timeout ---------------------------------------------------------------

/// asyncio.wait_for: waits for `task` at most `timeout` and returns its value (or
/// rethrows its exception). At the deadline it cancels the task, waits for it to end and
/// throws TimeoutError — unless the task finished with a value or an exception
/// meanwhile, which is then returned / rethrown (a result that races with the timeout
/// is never lost). With no timeout (std::nullopt) it waits until the task is done. A
/// zero or negative timeout still returns the value of a task that is already done
/// (asyncio's wait_for(fut, 0)); one that is not is cancelled and joined at once. If
/// the caller is cancelled while waiting, the task is cancelled (with the caller's
/// message) and joined; if it ended cancelled, the caller gets
/// CancelledError. If it ended otherwise — it completed at that same moment, or it
/// turned the cancellation into a value or an error (a Queue::get() already served
/// returns its item; a handler catches CancelledError and returns) — that value is
/// returned (or that error rethrown), so nothing the task received is lost, and the
/// caller's own cancellation stays pending, raised at its next suspension point.
/// (asyncio 3.12 also returns such a value; there the caller's cancellation is spent.)
template <class T>
T wait_for(Task<T> task, TimeLimit timeout, std::source_location where = std::source_location::current()) {
  detail::wait_for_core(detail::checked_core(task), detail::deadline_of(timeout), where);
  return task.result();
}
/// The same for a Future: at the deadline the future is cancelled.
template <class T>
T wait_for(Future<T> fut, TimeLimit timeout, std::source_location where = std::source_location::current()) {
  detail::wait_for_core(detail::checked_core(fut), detail::deadline_of(timeout), where);
  return fut.result();
}
/// Starts fn() as a task and waits for it as above. The task always ends before this
/// returns or throws, so fn may capture the caller's locals by reference. With a zero or
/// negative timeout fn is not run at all and TimeoutError is thrown (asyncio 3.11 made
/// the task and cancelled it before its first step; on several workers a task could
/// start before that cancel lands, so spindle does not make it). Throws RuntimeError
/// outside a runtime.
template <class F>
requires(!Awaitable<F> && std::is_invocable_v<std::decay_t<F>>) auto wait_for(
    F&& fn, TimeLimit timeout, std::source_location where = std::source_location::current()) {
  if (timeout.expired()) throw TimeoutError();
  auto task = spawn(std::forward<F>(fn));
  detail::JoinGuard guard{task.core_ptr(), where};  // declared after `task`: runs first
  return wait_for(task, timeout, where);
}

namespace detail {
// timeout's and timeout_at's body, for a deadline in deadline.hpp's encoding (0: none)
// that has not passed yet.
template <class F>
auto timeout_until(int64_t deadline_ns, F&& fn, std::source_location where) {
  auto task = spawn(TaskOptions{.name = "timeout"}, std::forward<F>(fn));
  JoinGuard guard{task.core_ptr(), where};  // declared after `task`: runs first
  wait_for_core(task.core_ptr(), deadline_ns, where);
  return task.result();
}
}  // namespace detail

/// asyncio.timeout(d) around a block: runs fn() in a task of its own and returns its
/// value; if it has not ended `d` from now, it is cancelled, joined, and TimeoutError is
/// thrown (unless it finished with a value or an exception meanwhile, which is then
/// returned / rethrown). With no limit (std::nullopt) fn just runs to its end.
/// Cancelling the caller cancels fn's task (CancelledError, not TimeoutError); if fn's
/// task ends with a value or an error anyway, that is returned / rethrown and the
/// caller's cancellation stays pending, as for wait_for. fn's task always ends before
/// this returns, so fn may capture locals by reference. C++ shape: the block is a
/// callable run in a child task (asyncio runs it in the calling task), so inside fn
/// current_task() is the child; and a limit that has already passed (d <= 0) throws
/// TimeoutError without running fn (asyncio would run the block up to its first
/// suspension). Throws RuntimeError outside a runtime.
template <class F>
requires std::is_invocable_v<std::decay_t<F>>
auto timeout(TimeLimit d, F&& fn, std::source_location where = std::source_location::current()) {
  if (d.expired()) throw TimeoutError();
  return detail::timeout_until(detail::deadline_of(d), std::forward<F>(fn), where);
}
/// asyncio.timeout_at: the same with an absolute steady_clock deadline. std::nullopt
/// (asyncio's timeout_at(None)) and time_point::max() mean none; a point already passed
/// throws TimeoutError without running fn.
template <class F>
requires std::is_invocable_v<std::decay_t<F>>
auto timeout_at(std::optional<std::chrono::steady_clock::time_point> deadline, F&& fn,
                std::source_location where = std::source_location::current()) {
  // Not `deadline - now()`: that overflows for time_point::min(). deadline_at maps
  // time_point::max() to "none" (0) and any past point to a positive passed deadline.
  const int64_t dl = deadline ? detail::deadline_at(*deadline) : 0;
  if (dl != 0 && dl <= detail::monotonic_ns()) throw TimeoutError();
  return detail::timeout_until(dl, std::forward<F>(fn), where);
}

// ---- wait ----------------------------------------------------------------------------------

/// When wait() returns (asyncio.FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED).
enum class ReturnWhen : uint8_t {
  first_completed,  ///< as soon as any is done (or cancelled)
  first_exception,  ///< as soon as any ends with an exception; else when all are done
  all_completed,    ///< when all are done
};
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::first_completed;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::first_exception;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::all_completed;

struct WaitOptions {
  /// Return at the latest after this long (nothing is cancelled); none by default. Zero
  /// or negative: return at once, with the handles already done in `done`.
  TimeLimit timeout{};
  ReturnWhen return_when = ALL_COMPLETED;
};

/// wait()'s result: the handles done and those still pending, each in input order.
template <class H>
struct WaitResult {
  std::vector<H> done;
  std::vector<H> pending;
};

/// asyncio.wait: waits until `return_when` holds or the timeout passes, and returns the
/// handles split into done and pending (input order, repeats dropped: asyncio takes a
/// set). Never cancels anything, not at the timeout and not when the caller is
/// cancelled (the caller gets CancelledError). Retrieves no outcome: the exceptions of
/// the done ones are still to be looked at. Throws std::invalid_argument for an empty
/// input, InvalidStateError for an empty handle.
template <std::ranges::input_range R>
requires Awaitable<std::ranges::range_value_t<R>>
auto wait(R&& handles, WaitOptions opts = {}, std::source_location where = std::source_location::current()) {
  using H = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  std::vector<H> hs = detail::collect_handles(handles, true);
  if (hs.empty()) throw std::invalid_argument("spindle::wait: the set of tasks is empty");
  const auto cores = detail::cores_of(hs);
  detail::WatchMode mode = detail::WatchMode::all;
  if (opts.return_when == FIRST_COMPLETED) mode = detail::WatchMode::any;
  if (opts.return_when == FIRST_EXCEPTION) mode = detail::WatchMode::exception_or_all;
  detail::wait_many(cores.data(), cores.size(), detail::deadline_of(opts.timeout), mode, where);
  WaitResult<H> r;
  for (auto& h : hs) (h.done() ? r.done : r.pending).push_back(std::move(h));
  return r;
}
template <class H>
requires Awaitable<H>
auto wait(std::initializer_list<H> handles, WaitOptions opts = {},
          std::source_location where = std::source_location::current()) {
  return wait(std::vector<H>(handles), opts, where);
}

// ---- gather ----------------------------------------------------------------------------

/// asyncio.gather(a, b, ...): waits for every one (handles, or callables it starts as
/// tasks) and returns their values as a tuple in argument order; a void task gives
/// std::monostate, a reference a std::reference_wrapper. The first failure in time (an
/// exception, or CancelledError for a child that was cancelled) is thrown at once and
/// the others keep running (their later failures are marked retrieved, as asyncio
/// does). If the caller is cancelled, every child is cancelled and joined, then the
/// caller gets CancelledError.
template <class... X>
requires(sizeof...(X) > 0 && (detail::HandleOrCallable<X> && ...)) auto gather(X&&... items) {
  const std::source_location where = std::source_location::current();
  auto hs = std::make_tuple(detail::as_handle(std::forward<X>(items))...);
  std::array<detail::FutureCore*, sizeof...(X)> cores =
      std::apply([](auto&... h) { return std::array<detail::FutureCore*, sizeof...(X)>{h.core_ptr()...}; }, hs);
  detail::gather_core(cores.data(), cores.size(), false, where);
  return std::apply(
      [](auto&... h) { return std::tuple<gathered_t<awaited_t<decltype(h)>>...>{detail::take_gathered(h)...}; }, hs);
}

/// gather over a range of handles: the values in input order (a repeated handle gives
/// its value at each of its positions). An empty range gives an empty vector. Throws as
/// the variadic gather does.
template <std::ranges::input_range R>
requires Awaitable<std::ranges::range_value_t<R>>
auto gather(R&& handles, std::source_location where = std::source_location::current()) {
  using H = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  std::vector<H> hs = detail::collect_handles(handles, false);
  std::vector<gathered_t<awaited_t<H>>> out;
  if (hs.empty()) return out;
  const auto cores = detail::cores_of(hs);
  detail::gather_core(cores.data(), cores.size(), false, where);
  out.reserve(hs.size());
  for (auto& h : hs) out.push_back(detail::take_gathered(h));
  return out;
}

/// asyncio.gather(..., return_exceptions=True): waits for every one and returns one
/// Result per input, in input order: the value, or the exception it ended with (a
/// CancelledError for a cancelled one). Throws only if the caller is cancelled (every
/// child is then cancelled and joined first).
template <std::ranges::input_range R>
requires Awaitable<std::ranges::range_value_t<R>>
auto gather_settled(R&& handles, std::source_location where = std::source_location::current()) {
  using H = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  using T = awaited_t<H>;
  std::vector<H> hs = detail::collect_handles(handles, false);
  std::vector<Result<T>> out;
  if (hs.empty()) return out;
  const auto cores = detail::cores_of(hs);
  detail::gather_core(cores.data(), cores.size(), true, where);
  out.reserve(hs.size());
  for (auto& h : hs) {
    if (std::exception_ptr e = detail::outcome_error(h.core_ptr())) {
      out.push_back(Result<T>::failure(std::move(e)));
    } else if constexpr (std::is_void_v<T>) {
      h.result();
      out.push_back(Result<T>::success());
    } else {
      out.push_back(Result<T>::success(h.result()));
    }
  }
  return out;
}

// ---- as_completed ------------------------------------------------------------------------

/// The range as_completed returns: iterating yields the handles in the order they
/// finish. Waiting for the next one happens in begin() and operator++ (or next()).
/// Belongs to one consumer; movable, not copyable.
template <class H>
class AsCompleted {
 public:
  class iterator {
   public:
    using value_type = H;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;
    iterator() = default;
    H& operator*() const { return *cur_; }
    H* operator->() const { return &*cur_; }
    /// Waits for the next one; throws TimeoutError / CancelledError as next() does.
    iterator& operator++() {
      cur_ = owner_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.cur_; }

   private:
    friend class AsCompleted;
    explicit iterator(AsCompleted* o) : owner_(o) {}
    AsCompleted* owner_ = nullptr;
    mutable std::optional<H> cur_;
  };

  AsCompleted(std::vector<H> items, int64_t deadline_ns, std::source_location where)
      : items_(std::move(items)), deadline_(deadline_ns), where_(where) {
    if (!items_.empty()) {
      cores_ = detail::cores_of(items_);
      watch_ = std::make_unique<detail::Watch>(cores_.data(), cores_.size(), detail::WatchMode::any);
    }
  }

  /// Waits for the next handle to finish and returns it; std::nullopt once all were
  /// handed out. Throws TimeoutError once the deadline passed (the rest are not
  /// cancelled), CancelledError if the caller is cancelled (nothing else is cancelled).
  std::optional<H> next() {
    if (yielded_ == items_.size()) return std::nullopt;
    for (;;) {
      const std::size_t i = watch_->next();
      if (i != detail::Watch::npos) {
        ++yielded_;
        return items_[i];
      }
      const auto o = watch_->wait(deadline_, true, where_);
      if (o == detail::Waiter::Outcome::cancelled) detail::raise_own_cancel();
      if (o == detail::Waiter::Outcome::timed_out) throw TimeoutError("as_completed: timed out");
    }
  }
  /// Waits for the first one (see next()).
  iterator begin() {
    iterator it(this);
    it.cur_ = next();
    return it;
  }
  std::default_sentinel_t end() const noexcept { return {}; }
  /// How many handles it yields in all (repeats dropped), and how many are still to come.
  std::size_t size() const noexcept { return items_.size(); }
  std::size_t remaining() const noexcept { return items_.size() - yielded_; }

 private:
  std::vector<H> items_;
  std::vector<detail::FutureCore*> cores_;
  std::unique_ptr<detail::Watch> watch_;
  int64_t deadline_;
  std::size_t yielded_ = 0;
  std::source_location where_;
};

/// asyncio.as_completed: `for (auto t : as_completed(tasks, 5s)) use(t.get());` yields
/// the handles (repeats dropped) in the order they finish; those already done come
/// first, in input order. With a timeout, the deadline is `timeout` from this call and
/// passing it throws TimeoutError from the iteration (nothing is cancelled); with a zero
/// or negative one, the handles already done are still yielded before it. C++ shape:
/// it yields the original handles (as asyncio 3.13's `async for` does), so which one
/// finished is known.
template <std::ranges::input_range R>
requires Awaitable<std::ranges::range_value_t<R>>
auto as_completed(R&& handles, TimeLimit timeout = {}, std::source_location where = std::source_location::current()) {
  using H = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  return AsCompleted<H>(detail::collect_handles(handles, true), detail::deadline_of(timeout), where);
}

// ---- shield --------------------------------------------------------------------------------

/// asyncio.shield: waits for `task` and returns its value (or rethrows its exception /
/// CancelledError if it was cancelled by someone else). If the caller is cancelled
/// meanwhile, the caller gets CancelledError at once and the task is left running; its
/// outcome then counts as retrieved (as asyncio's shield marks it), so an exception it
/// ends with later is not reported as never retrieved. A handle to it still gives it.
template <class T>
T shield(Task<T> task, std::source_location where = std::source_location::current()) {
  detail::shield_core(detail::checked_core(task), where);
  return task.result();
}
template <class T>
T shield(Future<T> fut, std::source_location where = std::source_location::current()) {
  detail::shield_core(detail::checked_core(fut), where);
  return fut.result();
}
/// Starts fn() as a task and shields it. The task outlives a cancelled caller, so fn
/// must not capture the caller's locals by reference; its failure after that is not
/// reported (nobody holds its handle: catch inside fn what must be seen). Throws
/// RuntimeError outside a runtime.
template <class F>
requires(!Awaitable<F> && std::is_invocable_v<std::decay_t<F>>) auto shield(
    F&& fn, std::source_location where = std::source_location::current()) {
  return shield(spawn(std::forward<F>(fn)), where);
}

}  // namespace spindle
