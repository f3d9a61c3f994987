// Deadlines from durations: the one place where "now + d" is computed, with saturation.
//
// Rule: a duration too large for the clock (nanoseconds::max(), hours::max(), or any d
// whose now + d overflows) means "no deadline", never a deadline in the past; a zero or
// negative duration means a deadline that has already passed (asyncio's sleep(0),
// call_later(-1, cb), wait_for(aw, 0)). Every timer, timed wait and I/O timeout goes
// through these, so none of them computes a time point by plain addition (signed
// overflow is undefined, and in practice wraps to a deadline in the past). The public
// spelling of a timeout, with "none" beside the durations, is TimeLimit
// (spindle/time_limit.hpp); detail::deadline_of turns it into a deadline here.
//
// Deadlines are CLOCK_MONOTONIC nanoseconds (steady_clock's clock on Linux), and 0 is
// the encoding of "none" (a real deadline is never 0: the clock started long ago).
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>
#include <type_traits>
#include <utility>

namespace spindle::detail {

/// CLOCK_MONOTONIC now, in ns. Any thread. Defined in runtime/src/timer_heap.cpp.
int64_t monotonic_ns() noexcept;

/// d converted to nanoseconds, saturated at nanoseconds::min()/max() instead of
/// overflowing (hours::max() becomes nanoseconds::max()). A floating-point count is
/// truncated toward zero, saturated the same way, and a NaN gives zero (a limit that has
/// passed, never "no deadline").
template <class Rep, class Period>
requires std::is_arithmetic_v<Rep>
constexpr std::chrono::nanoseconds saturating_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using namespace std::chrono;
  if constexpr (std::is_floating_point_v<Rep>) {
    // In long double ns; +-2^63 are exact in every binary floating type, so the range
    // checks are exact and the cast below never leaves int64 (out of range it would be
    // undefined). An infinite count (from the scaling too) compares like a huge one.
    const long double ns = duration_cast<duration<long double, std::nano>>(d).count();
    constexpr long double two63 = 9223372036854775808.0L;
    if (ns != ns) return nanoseconds::zero();  // NaN
    if (ns >= two63) return nanoseconds::max();
    if (ns <= -two63) return nanoseconds::min();
    return nanoseconds(int64_t(ns));
  } else if constexpr (std::ratio_greater_v<Period, std::nano>) {
    // Coarser than ns: the bounds in d's unit are exact (a division), and the counts are
    // compared as integers of whatever sign (std::cmp_*), so nothing can overflow.
    using Wide = duration<intmax_t, Period>;
    constexpr intmax_t hi = duration_cast<Wide>(nanoseconds::max()).count();
    constexpr intmax_t lo = duration_cast<Wide>(nanoseconds::min()).count();
    if (std::cmp_greater(d.count(), hi)) return nanoseconds::max();
    if (std::cmp_less(d.count(), lo)) return nanoseconds::min();
    return duration_cast<nanoseconds>(Wide(intmax_t(d.count())));
  } else {
    // As fine as ns or finer: converting divides (or is exact), except that a wider
    // unsigned/128-bit count of ns may still exceed int64.
    if constexpr (std::is_same_v<Period, std::nano>) {
      if (std::cmp_greater(d.count(), std::numeric_limits<int64_t>::max())) return nanoseconds::max();
      if (std::cmp_less(d.count(), std::numeric_limits<int64_t>::min())) return nanoseconds::min();
      return nanoseconds(int64_t(d.count()));
    } else {
      return duration_cast<nanoseconds>(d);
    }
  }
}

/// The deadline d after `now_ns`: `now_ns` itself (but never 0) for a zero or negative
/// d, 0 ("none") when now_ns + d does not fit in int64.
constexpr int64_t deadline_from(int64_t now_ns, std::chrono::nanoseconds d) noexcept {
  if (d.count() <= 0) return now_ns != 0 ? now_ns : 1;                     // already passed, and never "none"
  if (d.count() > std::numeric_limits<int64_t>::max() - now_ns) return 0;  // beyond the clock
  return now_ns + d.count();
}

/// The deadline d from now (see deadline_from): already passed for d <= 0, 0 ("none")
/// for a d too large. Any thread.
inline int64_t deadline_after(std::chrono::nanoseconds d) noexcept { return deadline_from(monotonic_ns(), d); }

/// The deadline of a steady_clock time point: time_point::max() (or anything at or
/// beyond the int64 ns range) gives 0 ("none"); a point at or before the clock's epoch
/// gives 1 (long passed, and never "none").
inline int64_t deadline_at(std::chrono::steady_clock::time_point tp) noexcept {
  const int64_t ns = saturating_ns(tp.time_since_epoch()).count();
  if (ns == std::numeric_limits<int64_t>::max()) return 0;
  return ns > 0 ? ns : 1;
}

/// A timeout in whole milliseconds for poll(2)/epoll_wait from `left_ns` > 0 still to
/// wait: rounded up (never 0, which would spin), and capped at INT_MAX.
constexpr int poll_ms(int64_t left_ns) noexcept {
  const int64_t ms = left_ns / 1'000'000 + (left_ns % 1'000'000 != 0);
  return ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max() : int(ms);
}

/// A timer entry's key: a deadline where "none" (0) becomes INT64_MAX, which sorts last
/// and never comes due.
constexpr int64_t timer_key(int64_t deadline_ns) noexcept {
  return deadline_ns != 0 ? deadline_ns : std::numeric_limits<int64_t>::max();
}

}  // namespace spindle::detail
