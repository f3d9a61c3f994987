// The hierarchy of spindle's errors (<spindle/errors.hpp>): every error spindle raises
// about its own operations is a spindle::Error and, beside it, the standard exception it
// always was, so it is caught by either and by its own name, with one message. A
// cancellation is not an Error (a `catch (const spindle::Error&)` lets it through), and
// neither is an ExceptionGroup, which carries the children's own exceptions.
#include <netdb.h>

#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include <spindle/spindle.hpp>

#include "support.hpp"

using namespace spindle;

namespace {

// Each error, its standard base, and that it is an Error.
template <class E, class Std>
constexpr bool is_error_beside() {
  return std::is_base_of_v<Error, E> && std::is_base_of_v<Std, E> && std::is_convertible_v<E*, Error*> &&
         std::is_convertible_v<E*, Std*> && std::is_convertible_v<E*, std::exception*>;
}
static_assert(is_error_beside<TimeoutError, std::runtime_error>());
static_assert(is_error_beside<RuntimeError, std::runtime_error>());
static_assert(is_error_beside<InvalidStateError, std::logic_error>());
static_assert(is_error_beside<TaskGroupClosed, RuntimeError>());
static_assert(is_error_beside<QueueFull, std::runtime_error>());
static_assert(is_error_beside<QueueEmpty, std::runtime_error>());
static_assert(is_error_beside<QueueShutDown, std::runtime_error>());
static_assert(is_error_beside<ChannelClosed, std::runtime_error>());
static_assert(is_error_beside<BrokenBarrierError, std::runtime_error>());
static_assert(is_error_beside<IncompleteReadError, std::runtime_error>());
static_assert(is_error_beside<LimitOverrunError, std::runtime_error>());
static_assert(is_error_beside<GaiError, std::system_error>());
static_assert(is_error_beside<BrokenExecutor, std::runtime_error>());
static_assert(is_error_beside<BrokenProcessPool, BrokenExecutor>());
static_assert(is_error_beside<ProcessError, std::runtime_error>());
// Left out on purpose.
static_assert(!std::is_base_of_v<Error, CancelledError> && !std::is_base_of_v<std::exception, CancelledError>);
static_assert(!std::is_base_of_v<Error, ExceptionGroup> && std::is_base_of_v<std::exception, ExceptionGroup>);
static_assert(!std::is_base_of_v<std::exception, Error>);

// What a catch of each kind takes from `throw e`: the message seen through Error, through
// Std and through std::exception ("" where the catch did not take it).
struct Caught {
  std::string as_error, as_std, as_exception, as_itself;
};
template <class Std, class E>
Caught catch_each_way(const E& e) {
  Caught c;
  try {
    throw e;
  } catch (const Error& x) {
    c.as_error = x.what();
  }
  try {
    throw e;
  } catch (const Std& x) {
    c.as_std = x.what();
  }
  try {
    throw e;
  } catch (const std::exception& x) {
    c.as_exception = x.what();
  }
  try {
    throw e;
  } catch (const E& x) {
    c.as_itself = x.what();
  }
  return c;
}

template <class Std, class E>
void check_caught_every_way(const E& e) {
  const Caught c = catch_each_way<Std>(e);
  INFO(e.what());
  CHECK(!c.as_error.empty());
  CHECK(c.as_error == c.as_std);
  CHECK(c.as_error == c.as_exception);
  CHECK(c.as_error == c.as_itself);
  CHECK(c.as_error == e.what());
}

// What `fn` throws, caught as an Error (its message), or "" if it threw nothing.
template <class F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("every spindle error is caught as a spindle::Error, as its standard base and by its own name", "[errors]") {
  check_caught_every_way<std::runtime_error>(TimeoutError());
  check_caught_every_way<std::runtime_error>(TimeoutError("the deadline passed"));
  check_caught_every_way<std::runtime_error>(RuntimeError("no running runtime"));
  check_caught_every_way<std::logic_error>(InvalidStateError("not done yet"));
  check_caught_every_way<RuntimeError>(TaskGroupClosed("closed"));
  check_caught_every_way<std::runtime_error>(QueueFull());
  check_caught_every_way<std::runtime_error>(QueueEmpty());
  check_caught_every_way<std::runtime_error>(QueueShutDown());
  check_caught_every_way<std::runtime_error>(ChannelClosed());
  check_caught_every_way<std::runtime_error>(BrokenBarrierError("broken"));
  check_caught_every_way<std::runtime_error>(IncompleteReadError("ab", 4));
  check_caught_every_way<std::runtime_error>(LimitOverrunError("no delimiter", 8));
  check_caught_every_way<std::system_error>(GaiError(EAI_NONAME, "nowhere.invalid"));
  check_caught_every_way<std::runtime_error>(BrokenExecutor("shut down"));
  check_caught_every_way<BrokenExecutor>(BrokenProcessPool("the worker died"));
  check_caught_every_way<std::runtime_error>(ProcessError("f: bad input"));
  // Each keeps what its standard base gives: a GaiError's code and category.
  const GaiError gai(EAI_NONAME, "nowhere.invalid");
  const Error& as_error = gai;
  CHECK(dynamic_cast<const std::system_error&>(as_error).code() == std::error_code(EAI_NONAME, gai_category()));
}

TEST_CASE("what spindle's operations raise is caught as a spindle::Error", "[errors]") {
  CHECK(error_of([] { (void)spawn([] {}); }).find("no running runtime") != std::string::npos);  // RuntimeError
  test::Checked harness(SPINDLE_WORKERS());
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Future<int> pending;
    CHECK(!error_of([&] { (void)pending.result(); }).empty());  // InvalidStateError
    pending.set_result(1);

    Queue<int> q(1);
    CHECK(error_of([&] { (void)q.get_nowait(); }) == "queue is empty");
    q.put_nowait(1);
    CHECK(error_of([&] { q.put_nowait(2); }) == "queue is full");
    q.shutdown(true);
    CHECK(error_of([&] { q.put_nowait(3); }) == "queue is shut down");

    Channel<int> ch;
    ch.close();
    CHECK(error_of([&] { ch.send(1); }) == "channel is closed");

    Barrier b(2);
    b.abort();
    CHECK(!error_of([&] { (void)b.wait(); }).empty());  // BrokenBarrierError

    TaskGroup tg;
    tg.join();
    CHECK(!error_of([&] { (void)tg.spawn([] {}); }).empty());  // TaskGroupClosed

    ThreadPool pool(1);
    pool.shutdown(true);
    CHECK(!error_of([&] { run_in_executor(pool, [] {}); }).empty());  // BrokenExecutor
  });
}

TEST_CASE("a cancellation is not a spindle::Error: a catch of Error lets it through", "[errors][cancel]") {
  test::Checked harness(SPINDLE_WORKERS());
  Runtime& rt = harness.rt;
  rt.block_on([] {
    bool caught_as_error = false;
    auto t = spawn([&] {
      try {
        Future<> never;
        never.get();
      } catch (const Error&) {
        caught_as_error = true;
      }
    });
    test::until_suspended(t);
    t.cancel();
    CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK(t.cancelled());
    CHECK_FALSE(caught_as_error);
  });
}

namespace {
// Runs a group whose one child runs `child`, and returns what join() threw: whether a
// catch of Error took it, and how many of its exceptions are Errors (-1: no group).
template <class F>
std::pair<bool, int> group_failure(F child) {
  try {
    try {
      TaskGroup tg;
      tg.spawn(std::move(child));
      tg.join();
    } catch (const Error&) {
      return {true, -1};
    }
  } catch (const ExceptionGroup& g) {
    return {false, g.size() == 1 ? int(g.count<Error>()) : -1};
  }
  return {false, -1};
}
}  // namespace

TEST_CASE("an ExceptionGroup is not a spindle::Error; a spindle error in it is", "[errors][taskgroup]") {
  test::Checked harness(SPINDLE_WORKERS());
  Runtime& rt = harness.rt;
  rt.block_on([] {
    CHECK(group_failure([] { (void)Queue<int>().get_nowait(); }) == std::pair{false, 1});  // QueueEmpty
    CHECK(group_failure([] { throw std::invalid_argument("the program's own"); }) == std::pair{false, 0});
  });
}
