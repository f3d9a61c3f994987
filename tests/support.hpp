// Shared test helpers: the worker counts every runtime test runs over, and a runtime
// whose reports (unretrieved exceptions, tasks that would not end) are captured.
#pragma once

#include <catch2/catch.hpp>

#include <spindle/spindle.hpp>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace test {

// 1, 2, 4 and 8 workers: more workers than this machine's 2 cores shakes out races.
#define SPINDLE_WORKERS() GENERATE(1u, 2u, 4u, 8u)

// TSan gives every fibre a shadow thread state of its own; 100k live fibres would need
// tens of GB there. Bulk tests divide their counts by this under TSan (the plain and
// ASan builds run them in full).
#if defined(SPINDLE_TSAN)
inline constexpr int kScaleDown = 20;
#else
inline constexpr int kScaleDown = 1;
#endif

struct Reports {
  std::mutex mu;
  std::vector<spindle::Report> items;
  std::function<void(const spindle::Report&)> sink() {
    return [this](const spindle::Report& r) {
      std::lock_guard lk(mu);
      items.push_back(r);
    };
  }
  std::size_t count(spindle::Report::Kind k) {
    std::lock_guard lk(mu);
    std::size_t n = 0;
    for (auto& r : items) n += r.kind == k;
    return n;
  }
  std::vector<spindle::Report> all() {
    std::lock_guard lk(mu);
    return items;
  }
};

// Waits until t has suspended somewhere (so a cancel hits a task that really waits).
inline void until_suspended(const spindle::Task<>& t) {
  for (;;) {
    const std::string w = t.where();
    if (w != "not started" && w != "running") return;
    spindle::yield();
  }
}

// A task body that waits until it is cancelled.
inline void forever() {
  for (;;) spindle::sleep(std::chrono::hours(1));
}

// SPINDLE_SHUFFLE=1 in the environment runs every test with Options::shuffle (the
// ASan+UBSan build of `make test` does), so no test relies on an order it was not promised.
inline bool shuffle_from_env() {
  const char* s = std::getenv("SPINDLE_SHUFFLE");
  return s && *s && *s != '0';
}

inline spindle::Options opts(unsigned workers, Reports* r = nullptr) {
  spindle::Options o;
  o.workers = workers;
  o.shuffle = shuffle_from_env();
  if (r) o.report = r->sink();
  return o;
}

// A runtime whose reports are captured and which, when the test ends, shuts down and
// checks that nothing was reported (no unretrieved exception, no task left behind).
struct QuietRuntime {
  explicit QuietRuntime(unsigned workers) : rt(opts(workers, &reports)) {}
  ~QuietRuntime() {
    rt.shutdown();
    CHECK(reports.all().empty());
  }
  Reports reports;
  spindle::Runtime rt;
};

}  // namespace test
