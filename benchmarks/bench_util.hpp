// Shared by the benchmark binaries: the fixed workload sizes, a monotonic stopwatch, the
// process's CPU time, memory figures from /proc/self/status, and the reporting rule (one
// timed run per benchmark call; figures as user counters; a wrong result skips).
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <sys/resource.h>

namespace bench {

// Sizes are part of the workloads' definitions: never scale them down.
inline constexpr uint64_t kYieldN = 10'000'000;          // yield_pingpong: total yields
inline constexpr uint64_t kSpawnN = 1'000'000;           // spawn_join: tasks
inline constexpr uint64_t kSkynetSize = 1'000'000;       // skynet: leaves
inline constexpr uint64_t kSkynetSum = 499'999'500'000;  // skynet: expected result
inline constexpr uint64_t kRoundTrips = 100'000;         // cross_thread_pingpong
inline constexpr std::chrono::seconds kIdleFor{5};       // idle: how long nothing happens

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// User + system CPU time of this process so far (every thread), in seconds.
inline double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return double(tv.tv_sec) + double(tv.tv_usec) * 1e-6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

/// Page faults of this process so far that needed no I/O (every thread): with anonymous
/// memory, one per page first touched.
inline long process_minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

/// A field of /proc/self/status in MiB ("VmHWM" = peak RSS, "VmRSS" = RSS now); -1 if absent.
inline double proc_status_mb(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  double mb = -1;
  const std::size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, field, n) == 0 && line[n] == ':') {
      mb = std::strtod(line + n + 1, nullptr) / 1024.0;  // the kernel reports kB
      break;
    }
  }
  std::fclose(f);
  return mb;
}
inline double peak_rss_mb() { return proc_status_mb("VmHWM"); }

/// Resets VmHWM to the current RSS (Linux 4.0+), so that each repetition in one process
/// reports its own peak rather than the highest so far. Best effort.
inline void reset_peak_rss() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

/// What one timed run of a workload produced.
struct Outcome {
  double seconds = 0;  // from just before the first spawn to just after the last join
  std::string error;   // non-empty: the self-check failed (or the workload threw)
};

/// Checks a result; returns an error message for Outcome::error, or "" when it matches.
inline std::string expect(const char* what, uint64_t got, uint64_t want) {
  if (got == want) return {};
  return std::string(what) + ": got " + std::to_string(got) + ", want " + std::to_string(want);
}

/// Runs `workload` (returning an Outcome) once per benchmark iteration, hands its time to
/// the manual timer and returns the last outcome; a failed check skips the benchmark.
/// Peak RSS is reset before each run: read peak_rss_mb() after this returns.
/// Exceptions become errors too, so one broken workload never aborts the whole binary.
template <class Workload>
bool timed(benchmark::State& state, Outcome& out, Workload&& workload) {
  for (auto _ : state) {
    reset_peak_rss();
    try {
      out = workload();
    } catch (const std::exception& e) {
      out = Outcome{0, std::string("exception: ") + e.what()};
    } catch (...) {
      out = Outcome{0, "unknown exception"};
    }
    state.SetIterationTime(out.seconds);
    if (!out.error.empty()) break;
  }
  if (!out.error.empty()) {
    state.SkipWithError(out.error.c_str());
    return false;
  }
  return true;
}

}  // namespace bench
