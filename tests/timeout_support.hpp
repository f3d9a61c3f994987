// The time limits the *_timeout_convention tests run every call with: those that must
// mean "no limit in effect" and those that must mean "already passed" (TimeLimit,
// time_limit.hpp).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <spindle/time_limit.hpp>

namespace test {

// None, and durations too large for the clock.
inline std::vector<spindle::TimeLimit> unlimited() {
  using namespace std::chrono;
  const int64_t now = spindle::detail::monotonic_ns();
  return {std::nullopt,
          spindle::TimeLimit{},
          hours::max(),
          nanoseconds::max(),
          milliseconds::max(),
          nanoseconds(INT64_MAX - now / 2),  // overflows only once added to now
          duration<double>(1e300),
          duration<double, std::ratio<3600>>(std::numeric_limits<double>::infinity())};
}

// Zero, negative (down to the most negative), and a NaN.
inline std::vector<spindle::TimeLimit> expired() {
  using namespace std::chrono;
  return {nanoseconds(0),     seconds(0),   nanoseconds(-1),        seconds(-1),
          nanoseconds::min(), hours::min(), duration<double>(-0.5), duration<double>(std::nan(""))};
}

inline std::string show(spindle::TimeLimit t) { return t ? std::to_string((*t).count()) + " ns" : std::string("none"); }

}  // namespace test
