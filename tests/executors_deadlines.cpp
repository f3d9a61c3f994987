// Executor timeouts at the edges: ProcessPoolOptions::timeout =
// milliseconds::max() means "no timeout" (its conversion to a deadline overflowed and
// killed the worker with TimeoutError); ThreadPool's keep_alive and shutdown_for take
// huge durations too.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>

#include <spindle/executors/process_pool.hpp>
#include <spindle/executors/thread_pool.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

int nap_impl(int ms) {
  ::usleep(useconds_t(ms) * 1000);
  return ms;
}
const auto nap = process_function("nap", &nap_impl);

// After the registrations: in a worker process this never returns.
const bool served = (serve_process_worker(), true);

}  // namespace

TEST_CASE("ProcessPool with a huge timeout runs calls to the end", "[executors][deadlines]") {
  for (auto t : {std::chrono::milliseconds::max(), std::chrono::milliseconds(INT64_MAX / 1'000'000 + 1)}) {
    INFO("timeout " << t.count() << " ms");
    ProcessPool pool({.workers = 1, .timeout = t});
    CHECK(pool.call(nap, 30) == 30);  // from a thread
    Runtime rt(test::opts(2));
    CHECK(rt.block_on([&] { return pool.call(nap, 30); }) == 30);  // from a task
  }
}

TEST_CASE("ThreadPool takes huge keep_alive and shutdown_for durations", "[executors][deadlines]") {
  ThreadPool pool(ThreadPoolOptions{
      .max_workers = 2, .keep_alive = std::chrono::milliseconds::max(), .spin = std::chrono::microseconds::max()});
  std::atomic<int> ran{0};
  for (int i = 0; i < 4; ++i) pool.submit([&] { ++ran; });
  CHECK(pool.shutdown_for(std::chrono::milliseconds::max()));
  CHECK(ran == 4);
}
