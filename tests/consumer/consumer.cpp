// A tiny program built outside spindle's tree (tests/consumer/meson.build and
// CMakeLists.txt): it spawns tasks that hand values through a Queue, waits on an Event
// set by a timer callback, sleeps, runs a pinned task, echoes a line through a loopback
// server, and checks every result. Exit status 0 only if all of it worked. It uses the
// documented style (designated initializers for the option structs) and is built with
// -Wall -Wextra -Werror, so the headers stay clean for user code.
#include <spindle/io.hpp>
#include <spindle/spindle.hpp>
#include <spindle/sync.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("consumer: " + what);
}

long produce_and_consume() {
  spindle::Queue<int> q(8);  // bounded: producers wait while it is full
  std::vector<spindle::Task<>> producers;
  for (int p = 0; p < 4; ++p)
    producers.push_back(spindle::spawn([&q, p] {
      for (int i = 1; i <= 100; ++i) q.put(p * 1000 + i);
    }));
  auto consumer = spindle::spawn([&q] {
    long sum = 0;
    for (int n = 0; n < 400; ++n) sum += q.get();
    return sum;
  });
  for (auto& t : producers) t.get();
  return consumer.get();
}

// A pinned task on loop 1, and a line echoed through a server on loopback.
void pinned_and_echo() {
  auto pinned = spindle::spawn(spindle::TaskOptions{.pinned = true, .loop = 1}, [] { return 11; });
  check(pinned.get() == 11, "the pinned task returned a wrong value");

  spindle::Server server = spindle::start_server([](spindle::TcpStream s) { s.write_all(s.read_line()); }, "127.0.0.1",
                                                 0, spindle::ServerOptions{.nodelay = true});
  spindle::TcpStream c = spindle::open_connection("127.0.0.1", server.port());
  c.write_all("hello\n");
  check(c.read_line() == "hello\n", "the echo server sent back something else");
  server.close();
}

}  // namespace

int main() {
  try {
    const long sum = spindle::run(
        [] {
          // A timer: call_later sets an Event that a task is waiting for.
          spindle::Event fired;
          const auto t0 = std::chrono::steady_clock::now();
          spindle::TimerHandle h = spindle::call_later(20ms, [&fired] { fired.set(); });
          auto waiter = spindle::spawn([&fired] {
            fired.wait();
            return 7;
          });
          check(waiter.get() == 7, "the task waiting on the Event returned a wrong value");
          check(std::chrono::steady_clock::now() - t0 >= 20ms, "call_later fired early");
          check(!h.cancel(), "a timer that fired could still be cancelled");

          spindle::sleep(1ms);
          pinned_and_echo();
          return produce_and_consume();
        },
        spindle::Options{.workers = 2});
    // 4 producers: sum over p of (100 * 1000 * p + 5050).
    check(sum == 100 * 1000 * (0 + 1 + 2 + 3) + 4 * 5050, "wrong sum " + std::to_string(sum));
    std::printf("consumer: ok (sum %ld)\n", sum);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
