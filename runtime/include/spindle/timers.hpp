// Timers: asyncio.sleep, loop.call_soon / call_later / call_at, for fibres and threads.
//
// Each loop keeps its own timers; a parked loop sleeps in epoll exactly until its
// earliest deadline. Callbacks never run inline: each runs in a task of its own (so it
// may suspend), and an exception it lets escape is reported as never retrieved.
//
// Durations (detail/deadline.hpp): one too large for the clock (nanoseconds::max(),
// hours::max(), any d whose now + d would overflow) means "never": the sleep lasts until
// cancelled, the callback never fires (it can still be cancelled). A zero or negative
// duration is already due. time_point::max() likewise means "never".
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <source_location>
#include <type_traits>
#include <utility>

#include <spindle/detail/deadline.hpp>
#include <spindle/task.hpp>

namespace spindle {

namespace detail {
struct TimerEntry;
class RuntimeImpl;
/// Arms a callback timer on the calling worker's loop (or, from a foreign thread, on
/// loop 0 of `rt`) at deadline_ns (from deadline.hpp; 0: never fires). Returns the entry
/// with a reference for the caller. Throws RuntimeError without a runtime, or from
/// outside one that is shut down (or shutting down).
TimerEntry* arm_callback(RuntimeImpl* rt, int64_t deadline_ns, std::function<void()> cb);
void timer_unref(TimerEntry* e) noexcept;
}  // namespace detail

/// A scheduled callback (asyncio.TimerHandle). Copies share the timer.
class TimerHandle {
 public:
  TimerHandle() noexcept = default;
  explicit TimerHandle(detail::TimerEntry* e) noexcept : e_(e) {}  // adopts a reference
  TimerHandle(const TimerHandle& o) noexcept;
  TimerHandle(TimerHandle&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  TimerHandle& operator=(TimerHandle o) noexcept {
    std::swap(e_, o.e_);
    return *this;
  }
  ~TimerHandle() {
    if (e_) detail::timer_unref(e_);
  }

  /// Cancels the callback if it has not fired yet; returns whether it did. Any thread.
  /// A successful cancel destroys the callback (and what it captured) before returning.
  bool cancel() noexcept;
  /// True once cancel() succeeded.
  bool cancelled() const noexcept;
  /// The deadline (time_point::max() for a timer that never fires).
  std::chrono::steady_clock::time_point when() const noexcept;

 private:
  detail::TimerEntry* e_ = nullptr;
};

/// asyncio.sleep(d): suspends the calling fibre for d (a foreign thread sleeps). A zero
/// or negative d just yields; a d too large for the clock sleeps until cancelled (a
/// foreign thread: for ever). Raises CancelledError if the task is cancelled meanwhile.
void sleep(std::chrono::nanoseconds d, std::source_location where = std::source_location::current());
/// The same for any other duration (integral or floating-point), converted without
/// overflow (hours::max() is "never", not a wrapped-around negative count of nanoseconds).
template <class Rep, class Period>
requires(std::is_arithmetic_v<Rep> &&
         !std::is_same_v<std::chrono::duration<Rep, Period>,
                         std::chrono::nanoseconds>) void sleep(std::chrono::duration<Rep, Period> d,
                                                               std::source_location where =
                                                                   std::source_location::current()) {
  sleep(detail::saturating_ns(d), where);
}
/// Suspends until tp (steady_clock). A past tp just yields; time_point::max() sleeps
/// until cancelled.
void sleep_until(std::chrono::steady_clock::time_point tp,
                 std::source_location where = std::source_location::current());

/// loop.call_soon(cb): runs cb() in a new task on the caller's runtime, soon. The returned
/// task can be cancelled before it starts (cb then never runs). Inside a runtime only;
/// from any thread use Runtime::call_soon.
template <class F>
Task<> call_soon(F&& cb) {
  return spawn(TaskOptions{.name = "call_soon"}, [cb = std::forward<F>(cb)]() mutable { cb(); });
}

/// loop.call_later(d, cb): runs cb() in a new task once d has passed (a zero or negative
/// d: soon; a d too large for the clock: never, until cancelled). Inside a runtime;
/// throws RuntimeError outside one (use Runtime::call_later).
template <class Rep, class Period, class F>
TimerHandle call_later(std::chrono::duration<Rep, Period> d, F&& cb) {
  const int64_t deadline = detail::deadline_after(detail::saturating_ns(d));
  return TimerHandle(detail::arm_callback(nullptr, deadline, std::function<void()>(std::forward<F>(cb))));
}
/// loop.call_at(tp, cb). time_point::max(): never.
template <class F>
TimerHandle call_at(std::chrono::steady_clock::time_point tp, F&& cb) {
  return TimerHandle(
      detail::arm_callback(nullptr, detail::deadline_at(tp), std::function<void()>(std::forward<F>(cb))));
}

}  // namespace spindle
