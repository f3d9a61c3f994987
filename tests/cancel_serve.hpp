// Cancel-then-serve races (issues 16 and 17): a task waits for something, and at once
// it is cancelled and what it waits for is served. The helpers here issue the two in
// each of the orders the tests run; the tests then account for what was served: it is
// returned by the cancelled wait, or left for the next waiter, never lost, never both.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
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

// Issues "cancel the waiter" and "serve it" in one of the orders above. One per test
// case: it keeps the foreign thread (starting a thread per round cost milliseconds).
// Use from one task at a time.
class Racer {
 public:
  explicit Racer(unsigned workers) : workers_(workers), th_([this] { thread_main(); }) {}
  Racer(const Racer&) = delete;
  Racer& operator=(const Racer&) = delete;
  ~Racer() {
    {
      std::lock_guard lk(mu_);
      quit_ = true;
    }
    cv_.notify_one();
    th_.join();
  }

  // Cancels `waiter` ("stop") and calls serve(), in order `o`; returns once both are
  // done. serve must be callable from any task and, for Order::foreign_thread, from a
  // thread outside the runtime. Call from a task of the runtime.
  template <class Serve>
  void cancel_and_serve(Order o, spindle::Task<> waiter, Serve&& serve) {
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
        auto s = spindle::spawn(spindle::TaskOptions{.pinned = true, .loop = int(workers_) - 1}, [&] {
          wait_go();
          serve();
        });
        go.store(true, std::memory_order_release);
        c.get();
        s.get();
        return;
      }
      case Order::foreign_thread: {
        std::function<void()> job = [&serve] { serve(); };
        {
          std::lock_guard lk(mu_);
          job_ = &job;
        }
        cv_.notify_one();
        // acquire/release on state_: the thread has taken the job (1), then serves
        // after go (2), and the task reads what serve() did after done (3).
        while (state_.load(std::memory_order_acquire) != 1) spindle::yield();
        state_.store(2, std::memory_order_release);
        waiter.cancel("stop");
        while (state_.load(std::memory_order_acquire) != 3) spindle::yield();
        state_.store(0, std::memory_order_relaxed);  // relaxed: the thread waits on the cv next
        return;
      }
    }
  }

 private:
  void thread_main() {
    for (;;) {
      std::function<void()>* job;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return quit_ || job_; });
        if (quit_) return;
        job = std::exchange(job_, nullptr);
      }
      state_.store(1, std::memory_order_release);
      while (state_.load(std::memory_order_acquire) != 2) std::this_thread::yield();
      (*job)();
      state_.store(3, std::memory_order_release);
    }
  }

  unsigned workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;                     // guarded by mu_
  std::function<void()>* job_ = nullptr;  // guarded by mu_
  std::atomic<int> state_{0};
  std::thread th_;
};

}  // namespace test
