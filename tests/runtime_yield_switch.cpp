// The yield path's direct switches: a fibre that yields or waits runs the next ready
// fibre without going through its loop's own context, and that fibre publishes it (stores
// its saved context, requeues a yielder) before anything else runs. These cases check
// what the switch must keep: yielders stolen by other loops resume whole (their saved
// context was complete before any thief could take them) with their stack data intact,
// chains of direct switches that end in a new task's start or in a fibre's end hand the
// loop back correctly, and each fibre keeps its own C++ exception state (the exception it
// handles, std::uncaught_exceptions() while it unwinds) across yields and threads.
#include <spindle/spindle.hpp>
#include <spindle/sync.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace spindle;

namespace {

// Yields `n` times, checking after each that the fibre's own stack is as it left it:
// a context resumed before it was completely saved would not get that far.
uint64_t yield_checking_stack(unsigned id, unsigned n) {
  volatile uint64_t marks[16];
  for (unsigned i = 0; i < 16; ++i) marks[i] = uint64_t(id) * 1000003u + i;
  uint64_t sum = 0;
  for (unsigned k = 0; k < n; ++k) {
    yield();
    for (unsigned i = 0; i < 16; ++i) {
      if (marks[i] != uint64_t(id) * 1000003u + i) return UINT64_MAX;
      sum += marks[i] & 1;
    }
  }
  return sum;
}

// Counts the steps on which a fibre that is not handling or throwing an exception sees
// exception state on its thread (another fibre's, which a switch failed to take away).
struct EhLeaks {
  std::atomic<unsigned> leaks{0};
  void check_clean() {
    if (std::uncaught_exceptions() != 0 || std::current_exception()) leaks.fetch_add(1, std::memory_order_relaxed);
  }
};

// Yields from a destructor while the exception that runs it is in flight.
struct YieldsWhileUnwinding {
  unsigned yields;
  std::atomic<unsigned>& wrong;
  ~YieldsWhileUnwinding() {
    for (unsigned k = 0; k < yields; ++k) {
      if (std::uncaught_exceptions() != 1) wrong.fetch_add(1, std::memory_order_relaxed);
      yield();
    }
    if (std::uncaught_exceptions() != 1) wrong.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace

TEST_CASE("yielders stolen by other loops resume with their whole context and stack", "[yield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  h.block_on([] {
    // More yielders than one ring holds, all spawned from this loop: the other loops
    // steal them (and the ring spills) while they yield.
    constexpr unsigned kTasks = 300, kYields = 200;
    std::vector<Task<uint64_t>> ts;
    ts.reserve(kTasks);
    for (unsigned i = 0; i < kTasks; ++i) ts.push_back(spawn([i] { return yield_checking_stack(i, kYields); }));
    for (unsigned i = 0; i < kTasks; ++i) CHECK(ts[i].get() == uint64_t(kYields) * 8);
  });
}

TEST_CASE("direct switches between yielders, waiters, new tasks and ending tasks hand each loop back", "[yield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  h.block_on([] {
    // Rounds of: yielders that spawn a child now and then (the next task a switch finds
    // is then a new one, started by the loop), waiters woken by the yielders (a woken
    // fibre is switched to directly), and tasks that end right after a direct switch
    // into them (their fibre's end returns to the loop whose context they never got
    // from the loop itself).
    constexpr unsigned kRounds = 20, kYielders = 16, kWaiters = 16;
    for (unsigned r = 0; r < kRounds; ++r) {
      Event go;
      std::atomic<unsigned> woken{0}, children{0};
      std::vector<Task<>> ts;
      for (unsigned i = 0; i < kWaiters; ++i)
        ts.push_back(spawn([&] {
          go.wait();
          woken.fetch_add(1, std::memory_order_relaxed);
          yield();  // ends right after this step's direct switch back into it
        }));
      for (unsigned i = 0; i < kYielders; ++i)
        ts.push_back(spawn([&, i] {
          for (unsigned k = 0; k < 50; ++k) {
            if (k == 25 && i == 0) go.set();
            // release: the round's end (its acquire load below) comes after every child's
            // last touch of the counter, which the next round's counter reuses the place of.
            if (k % 10 == i % 10) spawn([&] { children.fetch_add(1, std::memory_order_release); });
            yield();
          }
        }));
      for (auto& t : ts) t.get();
      CHECK(woken.load() == kWaiters);
      while (children.load(std::memory_order_acquire) < kYielders * 5) yield();  // fire-and-forget children
    }
  });
}

TEST_CASE("each fibre keeps its own uncaught exception count across yields and threads", "[yield]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  h.block_on([] {
    EhLeaks clean;
    std::atomic<unsigned> wrong{0};
    std::vector<Task<std::string>> unwinders;
    std::vector<Task<>> others;
    // Fibres that yield in a destructor while an exception unwinds through it, beside
    // fibres that throw and catch between yields and check, at every step, that they see
    // no exception state but their own.
    for (int i = 0; i < 32; ++i)
      unwinders.push_back(spawn([i, &wrong]() -> std::string {
        try {
          YieldsWhileUnwinding guard{20, wrong};
          throw std::runtime_error("unwinding-" + std::to_string(i));
        } catch (const std::runtime_error& e) {
          yield();  // inside the handler: the exception stays ours
          return e.what();
        }
      }));
    for (int i = 0; i < 32; ++i)
      others.push_back(spawn([&clean] {
        for (int k = 0; k < 40; ++k) {
          clean.check_clean();
          try {
            throw std::logic_error("noise");
          } catch (const std::logic_error&) {
          }
          yield();
        }
        clean.check_clean();
      }));
    for (int i = 0; i < 32; ++i) CHECK(unwinders[i].get() == "unwinding-" + std::to_string(i));
    for (auto& t : others) t.get();
    CHECK(wrong.load() == 0);
    CHECK(clean.leaks.load() == 0);
    CHECK(std::uncaught_exceptions() == 0);
    CHECK(!std::current_exception());
  });
}
