// TimeLimit: how long a call may wait (asyncio's `timeout: float | None`). Every spindle
// call that takes a timeout takes one, and reads it the same way, asyncio's:
//
//   - none (std::nullopt, `{}`, or a default TimeLimit): no limit; the call waits until
//     what it waits for is done (or it is cancelled);
//   - a duration d > 0: the call gives up d after it began (TimeoutError, or what its
//     documentation says it does at the limit);
//   - zero or negative: the limit has already passed. The call still makes its one try
//     without waiting where asyncio makes one (wait_for on a task that is already done
//     returns its value, wait() reports the handles already done, a read takes the bytes
//     already received, accept takes a connection already queued); then it gives up. A
//     call that would first have to start something (wait_for(fn, 0), timeout(0, fn), a
//     ProcessPool call) gives up without starting it, as asyncio's wait_for(coro, 0)
//     cancels the coroutine's task before its first step;
//   - a duration too large for the clock (hours::max(), nanoseconds::max(), any d with
//     now + d beyond the clock's range): no limit in effect. Never a deadline wrapped
//     around into the past.
//
// Any std::chrono::duration converts implicitly and without overflow: an integral count
// saturates at nanoseconds' range (detail/deadline.hpp: saturating_ns), a floating-point
// one too (a NaN counts as zero: expired, never "no limit"). There is deliberately no
// conversion from a plain number: `0` alone does not say whether it means none or now.
//
// The name is not `Timeout`, which would read as the function spindle::timeout.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>

#include <spindle/detail/deadline.hpp>

namespace spindle {

/// A timeout: none, or a duration (see the rules above). A small value type; copy it.
class TimeLimit {
 public:
  /// No limit.
  constexpr TimeLimit() noexcept = default;
  /// No limit: `wait_for(task, std::nullopt)`, asyncio's `timeout=None`.
  constexpr TimeLimit(std::nullopt_t) noexcept {}
  /// A limit of d, converted to nanoseconds with saturation (hours::max() stays huge).
  template <class Rep, class Period>
  requires std::is_arithmetic_v<Rep>
  constexpr TimeLimit(std::chrono::duration<Rep, Period> d) noexcept : d_(detail::saturating_ns(d)) {}
  /// None if d is empty, else *d as above.
  template <class Rep, class Period>
  requires std::is_arithmetic_v<Rep>
  constexpr TimeLimit(const std::optional<std::chrono::duration<Rep, Period>>& d) noexcept {
    if (d) d_ = detail::saturating_ns(*d);
  }

  /// True if there is a limit (it may be huge, or already passed).
  constexpr bool has_value() const noexcept { return d_.has_value(); }
  constexpr explicit operator bool() const noexcept { return d_.has_value(); }
  /// The limit. Throws std::bad_optional_access if there is none.
  constexpr std::chrono::nanoseconds value() const { return d_.value(); }
  /// The limit; has_value() must be true.
  constexpr std::chrono::nanoseconds operator*() const noexcept { return *d_; }
  /// True for a zero or negative limit: it has passed before the wait begins.
  constexpr bool expired() const noexcept { return d_.has_value() && d_->count() <= 0; }

  friend constexpr bool operator==(const TimeLimit&, const TimeLimit&) = default;

 private:
  std::optional<std::chrono::nanoseconds> d_;
};

namespace detail {
/// The deadline of a wait bounded by t that starts now, in deadline.hpp's encoding:
/// 0 ("none") for no limit and for a limit too large for the clock, a deadline already
/// passed for a zero or negative one. Any thread.
inline int64_t deadline_of(TimeLimit t) noexcept { return t ? deadline_after(*t) : 0; }
}  // namespace detail

}  // namespace spindle
