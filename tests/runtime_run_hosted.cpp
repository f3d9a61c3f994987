// spindle::run runs loop 0 on the thread that called it while the main task runs, then
// gives the loop a thread of its own for the shutdown: what the caller sees of that.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

#include <spindle/io.hpp>

#include "support.hpp"

using namespace spindle;

namespace {

// Runs fn under run() with n workers and checks what a test harness would at teardown:
// no report, and the descriptors the process had before.
template <class F>
auto checked_run(unsigned n, F&& fn) {
  test::Reports reports;
  const int fds = test::open_fds();
  struct Check {
    test::Reports& r;
    int fds;
    ~Check() {
      CHECK(r.all().empty());
      CHECK(test::open_fds() == fds);
    }
  } check{reports, fds};
  return run(std::forward<F>(fn), test::opts(n, &reports));
}

}  // namespace

TEST_CASE("run: the calling thread runs loop 0 while the main task runs", "[run]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::thread::id caller = std::this_thread::get_id();
  const bool on_caller = checked_run(n, [caller] {
    // A task pinned to loop 0 runs on that loop's thread: the caller's.
    return spawn(TaskOptions{.pinned = true, .loop = 0}, [caller] { return std::this_thread::get_id() == caller; })
        .get();
  });
  CHECK(on_caller);
}

TEST_CASE("run: the main task's value and exception reach the caller", "[run]") {
  const unsigned n = SPINDLE_WORKERS();
  CHECK(checked_run(n, [] { return spawn([] { return 21; }).get() * 2; }) == 42);
  CHECK_THROWS_AS(checked_run(n, []() -> int { throw std::runtime_error("main failed"); }), std::runtime_error);
  // A main task that has nothing to wait for, twice on the same thread.
  checked_run(n, [] {});
  checked_run(n, [] {});
}

TEST_CASE("run: tasks the main task left on loop 0 are cancelled and awaited after it", "[run]") {
  const unsigned n = SPINDLE_WORKERS();
  std::atomic<int> unwound{0};
  checked_run(n, [&unwound] {
    // One waits, one keeps loop 0 busy (the loop is handed over between two of its
    // steps), both pinned to loop 0, so only that loop can end them.
    auto waiter = spawn(TaskOptions{.pinned = true, .loop = 0}, [&unwound] {
      try {
        test::forever();
      } catch (const CancelledError&) {
        unwound.fetch_add(1);
        throw;
      }
    });
    auto busy = spawn(TaskOptions{.pinned = true, .loop = 0}, [&unwound] {
      try {
        for (;;) yield();
      } catch (const CancelledError&) {
        unwound.fetch_add(1);
        throw;
      }
    });
    test::until_suspended(waiter);
    while (!test::has_started(busy)) yield();
  });
  CHECK(unwound.load() == 2);
}

TEST_CASE("run: fds loop 0 watched are served and closed by the loop's own thread after the main task", "[run]") {
  const unsigned n = SPINDLE_WORKERS();
  std::atomic<int> ended{0};
  checked_run(n, [&ended] {
    TcpListener l("127.0.0.1", 0);
    const uint16_t port = l.port();
    // Both ends wait pinned to loop 0 (registered with its epoll) when the main task
    // ends; the shutdown, run by the loop on its own thread, cancels them and closes
    // their fds there (the test then finds the process's descriptors as before).
    auto reader = spawn(TaskOptions{.pinned = true, .loop = 0}, [&l, &ended] {
      struct Ended {
        std::atomic<int>& n;
        ~Ended() { n.fetch_add(1); }
      } mark{ended};
      TcpStream s = l.accept();
      char b[16];
      while (s.read(b, sizeof b) != 0) {
      }
    });
    TcpStream c = open_connection("127.0.0.1", port);
    auto holder = spawn(TaskOptions{.pinned = true, .loop = 0}, [c = std::move(c), &ended]() mutable {
      struct Ended {
        std::atomic<int>& n;
        ~Ended() { n.fetch_add(1); }
      } mark{ended};
      char b[16];
      (void)c.read(b, sizeof b);  // the reader never writes: waits until cancelled
    });
    test::until_suspended(reader);
    test::until_suspended(holder);
  });
  CHECK(ended.load() == 2);
}

TEST_CASE("run: nested in a task, it waits as a foreign call", "[run]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  const int v = h.block_on([n] { return run([] { return spawn([] { return 7; }).get(); }, test::opts(n)); });
  CHECK(v == 7);
}

TEST_CASE("run: the caller's exception in flight and alternate signal stack are its own again after", "[run]") {
  const unsigned n = SPINDLE_WORKERS();
  // The caller's own alternate signal stack: loop 0 sets its own while it runs there.
  static char mine[64 * 1024];
  stack_t ss{};
  ss.ss_sp = mine;
  ss.ss_size = sizeof mine;
  stack_t before{};
  REQUIRE(sigaltstack(&ss, &before) == 0);
  try {
    throw std::runtime_error("outer");
  } catch (const std::runtime_error&) {
    // Called inside a handler: tasks on loop 0 catch and suspend with their own.
    checked_run(n, [] {
      try {
        throw std::logic_error("inner");
      } catch (const std::logic_error&) {
        yield();
        CHECK(std::current_exception() != nullptr);
      }
      CHECK(std::uncaught_exceptions() == 0);
    });
    try {
      throw;  // the handler's exception is still the one in flight
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "outer");
    }
  }
  stack_t after{};
  REQUIRE(sigaltstack(nullptr, &after) == 0);
  CHECK(after.ss_sp == static_cast<void*>(mine));
  CHECK(after.ss_size == sizeof mine);
  stack_t off{};
  off.ss_flags = SS_DISABLE;
  sigaltstack(&off, nullptr);
  if (!(before.ss_flags & SS_DISABLE)) sigaltstack(&before, nullptr);
}
