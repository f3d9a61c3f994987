// Signals through signalfd: wait_signal and on_signal.
//
// SIGUSR1 and SIGUSR2 are blocked before main runs (a static initialiser below), so
// every thread this program starts inherits the mask, as signals.hpp requires.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include <spindle/io/signals.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {
const bool blocked_at_start = (block_signals({SIGUSR1, SIGUSR2}), true);

// Consumes a pending signal left over by a failed test, so that tests stay independent.
void drain(int sig) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  timespec zero{0, 0};
  while (sigtimedwait(&set, nullptr, &zero) == sig) {
  }
}

// Open fds of this process (to check that nothing leaks one).
int open_fds() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}
}  // namespace

TEST_CASE("wait_signal returns a signal raised with kill() while it waits", "[signals]") {
  REQUIRE(blocked_at_start);
  const unsigned n = SPINDLE_WORKERS();
  drain(SIGUSR1);
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  const int got = rt.block_on([] {
    auto raiser = spawn([] {
      sleep(20ms);
      ::kill(::getpid(), SIGUSR1);
    });
    const int s = wait_signal({SIGUSR1, SIGUSR2}, 10s);
    raiser.get();
    return s;
  });
  CHECK(got == SIGUSR1);
}

TEST_CASE("a signal raised before anyone waits stays pending for the next wait", "[signals]") {
  const unsigned n = SPINDLE_WORKERS();
  drain(SIGUSR2);
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  ::kill(::getpid(), SIGUSR2);
  CHECK(rt.block_on([] { return wait_signal({SIGUSR2}, 10s); }) == SIGUSR2);
}

TEST_CASE("wait_signal times out, and a cancelled wait consumes nothing", "[signals]") {
  const unsigned n = SPINDLE_WORKERS();
  drain(SIGUSR1);
  const int fds_before = open_fds();
  {
    test::Checked harness(n);
    Runtime& rt = harness.rt;
    const bool timed_out = rt.block_on([] {
      try {
        wait_signal({SIGUSR1}, 20ms);
      } catch (const TimeoutError&) {
        return true;
      }
      return false;
    });
    CHECK(timed_out);
    auto waiter = rt.spawn([] { return wait_signal({SIGUSR1}); });
    test::until_suspended(waiter);
    CHECK(waiter.cancel());
    CHECK_THROWS_AS(waiter.get(), CancelledError);
    // The next signal goes to the next waiter.
    ::kill(::getpid(), SIGUSR1);
    CHECK(rt.block_on([] { return wait_signal({SIGUSR1}, 10s); }) == SIGUSR1);
  }
  CHECK(open_fds() == fds_before);  // every signalfd was closed
}

TEST_CASE("on_signal runs its callback for each signal until cancelled", "[signals]") {
  const unsigned n = SPINDLE_WORKERS();
  drain(SIGUSR2);
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  std::atomic<int> calls{0};
  std::atomic<int> last{0};
  auto handler = rt.block_on([&] {
    return on_signal(SIGUSR2, [&](int s) {
      last.store(s);  // seq_cst: test flags polled by the test thread
      calls.fetch_add(1);
    });
  });
  for (int i = 1; i <= 3; ++i) {
    // Standard signals coalesce while pending: raise the next only once this one ran.
    ::kill(::getpid(), SIGUSR2);
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (calls.load() < i && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
    REQUIRE(calls.load() == i);
  }
  CHECK(last.load() == SIGUSR2);
  CHECK(handler.cancel());
  CHECK_THROWS_AS(handler.get(), CancelledError);
}

TEST_CASE("wait_signal works from a thread outside the runtime", "[signals]") {
  drain(SIGUSR1);
  std::thread raiser([] {
    std::this_thread::sleep_for(20ms);
    ::kill(::getpid(), SIGUSR1);
  });
  CHECK(wait_signal({SIGUSR1}, 10s) == SIGUSR1);
  raiser.join();
}

TEST_CASE("signal functions reject bad input with clear errors", "[signals]") {
  CHECK_THROWS_AS(wait_signal({}), std::invalid_argument);
  CHECK_THROWS_AS(wait_signal({SIGKILL}), std::invalid_argument);
  CHECK_THROWS_AS(block_signals({SIGSTOP}), std::invalid_argument);
  CHECK_THROWS_AS(wait_signal({9999}), std::invalid_argument);
  // SIGWINCH is not blocked in this program: waiting for it would never work.
  CHECK_THROWS_AS(wait_signal({SIGWINCH}, 10ms), RuntimeError);
  CHECK_THROWS_AS(on_signal(SIGUSR1, [](int) {}), RuntimeError);  // outside a runtime
}
