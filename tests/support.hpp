// Shared test helpers: the worker counts every runtime test runs over, and a runtime
// whose reports (unretrieved exceptions, tasks that would not end) are captured.
#pragma once

#include <catch2/catch.hpp>

#include <spindle/spindle.hpp>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <thread>
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

// Whether t has got to a wait: it started and is not running (it waits, or is ready again
// after a wait, or has ended), or it ended without starting.
inline bool has_suspended(const spindle::Task<>& t) {
  const spindle::TaskWhere w = t.where();
  return w.state == spindle::TaskState::done || (w.started && w.state != spindle::TaskState::running);
}

// Whether t's body has run (or it ended without running).
inline bool has_started(const spindle::Task<>& t) {
  const spindle::TaskWhere w = t.where();
  return w.started || w.state == spindle::TaskState::done;
}

// Waits until t has suspended somewhere (so a cancel hits a task that really waits).
inline void until_suspended(const spindle::Task<>& t) {
  while (!has_suspended(t)) spindle::yield();
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

// Open file descriptors of this process (the entries of /proc/self/fd, less the one
// the listing itself opens).
inline int open_fds() {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n - 1;
}

// What a test may leave behind at teardown, each named where the test says why.
struct Allow {
  bool reports = false;     // it expects reports, and checks them itself (h.reports)
  bool live_tasks = false;  // tasks still running at teardown are the point (shutdown ends them)
  bool fds = false;         // it keeps descriptors open past the runtime on purpose
};

// The test harness: a runtime over `workers` loops (shuffled when SPINDLE_SHUFFLE is
// set) whose reports are captured, and which fails the test at teardown on anything it
// leaks (Marl's and libuv's per-test checks):
//   - a task still alive once the test body is done (waited for, a bounded while, first:
//     a task the body cancelled may still be unwinding on another loop), or a fibre
//     stack still in use;
//   - a report (an exception nobody retrieved, a task that would not end, ...);
//   - a file descriptor more or fewer than before the runtime was made.
// Allow{...} names what one test may leave. Use: `test::Checked h(SPINDLE_WORKERS());
// h.rt.block_on(...)`; checks run when h goes out of scope, or at h.finish().
class Checked {
 public:
  explicit Checked(unsigned workers, Allow allow = {}) : Checked(opts(workers), allow) {}
  Checked(spindle::Options o, Allow allow = {})
      : allow_(allow), fds_before_(open_fds()), holder_(std::in_place, with_sink(std::move(o))), rt(*holder_) {}
  Checked(const Checked&) = delete;
  Checked& operator=(const Checked&) = delete;
  ~Checked() { finish(); }

  spindle::Runtime& runtime() { return *holder_; }
  template <class F>
  auto block_on(F&& fn) {
    return holder_->block_on(std::forward<F>(fn));
  }

  // Runs the teardown checks now (idempotent): waits for the live tasks to end, shuts
  // the runtime down, destroys it, and checks reports and descriptors.
  void finish() {
    if (!holder_) return;
    if (std::uncaught_exceptions() > 0) {  // the test already failed: just clean up
      holder_.reset();
      return;
    }
    if (!allow_.live_tasks) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      spindle::Metrics m = holder_->metrics();
      while ((m.live_tasks > 0 || m.stacks_in_use > 0) && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        m = holder_->metrics();
      }
      if (m.live_tasks > 0 || m.stacks_in_use > 0) holder_->dump_tasks(std::cerr);
      CHECK(m.live_tasks == 0);
      CHECK(m.stacks_in_use == 0);
    }
    holder_->shutdown();
    holder_.reset();
    if (!allow_.reports) {
      for (const auto& r : reports.all()) FAIL_CHECK("unexpected report: " << r.message);
    }
    if (!allow_.fds) CHECK(open_fds() == fds_before_);
  }

  Reports reports;

 private:
  spindle::Options with_sink(spindle::Options o) {
    if (!o.report) o.report = reports.sink();
    return o;
  }
  Allow allow_;
  int fds_before_;
  std::optional<spindle::Runtime> holder_;

 public:
  spindle::Runtime& rt;  // the runtime under test (valid until finish())
};

// The harness with its default checks, under the name older tests use.
using QuietRuntime = Checked;

}  // namespace test
