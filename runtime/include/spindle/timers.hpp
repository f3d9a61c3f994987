// Timers: asyncio.sleep, loop.call_soon / call_later / call_at, for fibres and threads.
//
// Each loop keeps its own timers; a parked loop sleeps in epoll exactly until its
// earliest deadline. Callbacks never run inline: each runs in a task of its own (so it
// may suspend), and an exception it lets escape is reported as never retrieved.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <source_location>
#include <utility>

#include <spindle/task.hpp>

namespace spindle {

namespace detail {
struct TimerEntry;
class RuntimeImpl;
/// Arms a callback timer on the calling worker's loop (or, from a foreign thread, on
/// loop 0 of `rt`). Returns the entry with a reference for the caller.
TimerEntry* arm_callback(RuntimeImpl* rt, int64_t deadline_ns, std::function<void()> cb);
int64_t to_ns(std::chrono::steady_clock::time_point tp) noexcept;
void timer_unref(TimerEntry* e) noexcept;
}  // namespace detail

/// A scheduled callback (asyncio.TimerHandle). Copies share the timer.
class TimerHandle {
 public:
  TimerHandle() noexcept = default;
  explicit TimerHandle(detail::TimerEntry* e) noexcept : e_(e) {}  // adopts a reference
  TimerHandle(const TimerHandle& o) noexcept;
  TimerHandle(TimerHandle&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  TimerHandle& operator=(TimerHandle o) noexcept { std::swap(e_, o.e_); return *this; }
  ~TimerHandle() { if (e_) detail::timer_unref(e_); }

  /// Cancels the callback if it has not fired yet; returns whether it did. Any thread.
  /// A successful cancel destroys the callback (and what it captured) before returning.
  bool cancel() noexcept;
  /// True once cancel() succeeded.
  bool cancelled() const noexcept;
  /// The deadline.
  std::chrono::steady_clock::time_point when() const noexcept;

 private:
  detail::TimerEntry* e_ = nullptr;
};

/// asyncio.sleep(d): suspends the calling fibre for d (a foreign thread sleeps). A zero
/// or negative d just yields. Raises CancelledError if the task is cancelled meanwhile.
void sleep(std::chrono::nanoseconds d, std::source_location where = std::source_location::current());
/// Suspends until tp (steady_clock). A past tp just yields.
void sleep_until(std::chrono::steady_clock::time_point tp,
                 std::source_location where = std::source_location::current());

/// loop.call_soon(cb): runs cb() in a new task on the caller's runtime, soon. The returned
/// task can be cancelled before it starts (cb then never runs). Inside a runtime only;
/// from any thread use Runtime::call_soon.
template <class F>
Task<> call_soon(F&& cb) {
  return spawn(TaskOptions{.name = "call_soon"}, [cb = std::forward<F>(cb)]() mutable { cb(); });
}

/// loop.call_later(d, cb): runs cb() in a new task once d has passed. Inside a runtime;
/// throws RuntimeError outside one (use Runtime::call_later).
template <class F>
TimerHandle call_later(std::chrono::nanoseconds d, F&& cb) {
  const auto tp = std::chrono::steady_clock::now() + (d.count() < 0 ? std::chrono::nanoseconds(0) : d);
  return TimerHandle(detail::arm_callback(nullptr, detail::to_ns(tp), std::function<void()>(std::forward<F>(cb))));
}
/// loop.call_at(tp, cb).
template <class F>
TimerHandle call_at(std::chrono::steady_clock::time_point tp, F&& cb) {
  return TimerHandle(detail::arm_callback(nullptr, detail::to_ns(tp), std::function<void()>(std::forward<F>(cb))));
}

}  // namespace spindle
