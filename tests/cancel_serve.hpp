// Cancel-then-serve races (issues 16 and 17): a task waits for something, and at once
// it is cancelled and what it waits for is served. The helpers here issue the two in
// each of the orders the tests run; the tests then account for what was served: it is
// returned by the cancelled wait, or left for the next waiter, never lost, never both.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "support.hpp"

namespace test {

enum class Order {
  cancel_then_serve,  // back to back from one task: cancel first
  serve_then_cancel,  // back to back from one task: serve first
  two_loops,          // a task pinned to loop 0 cancels while one pinned to the last loop serves
  foreign_thread,     // a thread outside the runtime serves while a task cancels
};
inline constexpr Order kOrders[] = {Order::cancel_then_serve, Order::serve_then_cancel, Order::two_loops,
                                    Order::foreign_thread};

inline const char* order_name(Order o) {
  switch (o) {
    case Order::cancel_then_serve:
      return "cancel then serve";
    case Order::serve_then_cancel:
      return "serve then cancel";
    case Order::two_loops:
      return "cancel and serve from two loops";
    case Order::foreign_thread:
      return "serve from a foreign thread";
  }
  return "?";
}

// Rounds per case: bounded so that a whole file stays well under 30 s in a debug build;
// fewer under TSan.
inline int rounds(int full) { return test::kScaleDown > 1 ? full / 10 + 1 : full; }

// Cancels `waiter` ("stop") and calls serve(), in order `o`; returns once both are done.
// serve must be callable from any task, and, for Order::foreign_thread, from a thread
// outside the runtime. Call from a task of a runtime with `workers` loops.
template <class Serve>
void cancel_and_serve(Order o, unsigned workers, spindle::Task<> waiter, Serve&& serve) {
  switch (o) {
    case Order::cancel_then_serve:
      waiter.cancel("stop");
      serve();
      return;
    case Order::serve_then_cancel:
      serve();
      waiter.cancel("stop");
      return;
    case Order::two_loops: {
      // Both spin (yielding) on one flag, so the cancel and the serve start together
      // on two threads when there are two loops.
      std::atomic<bool> go{false};
      auto wait_go = [&go] {
        // acquire: pairs with the release store below (nothing else is published).
        while (!go.load(std::memory_order_acquire)) spindle::yield();
      };
      auto c = spindle::spawn(spindle::TaskOptions{.pinned = true, .loop = 0}, [&] {
        wait_go();
        waiter.cancel("stop");
      });
      auto s = spindle::spawn(spindle::TaskOptions{.pinned = true, .loop = int(workers) - 1}, [&] {
        wait_go();
        serve();
      });
      go.store(true, std::memory_order_release);
      c.get();
      s.get();
      return;
    }
    case Order::foreign_thread: {
      std::atomic<int> state{0};  // 1: go, 2: served
      std::thread th([&] {
        // acquire/release: the thread starts serving after the flag, and the task reads
        // what serve() did after it sees 2.
        while (state.load(std::memory_order_acquire) != 1) std::this_thread::yield();
        serve();
        state.store(2, std::memory_order_release);
      });
      state.store(1, std::memory_order_release);
      waiter.cancel("stop");
      while (state.load(std::memory_order_acquire) != 2) spindle::yield();
      th.join();
      return;
    }
  }
}

}  // namespace test
