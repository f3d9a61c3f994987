// An echo server that shuts down gracefully on SIGINT or SIGTERM:
//
//   1. stop accepting (the listener closes; new connections are refused);
//   2. cancel every connection's task (each sees CancelledError at its read or write,
//      and its stream is closed as its handler returns);
//   3. wait for all of them, at most GRACE_MS (re-cancelling stragglers every 100 ms);
//   4. exit 0 if nothing is left, 1 if something would not end in time.
//
//   graceful_server [PORT=7777 (0: any free port)] [WORKERS=0 (one per CPU)] [GRACE_MS=2000]
//
// It prints "listening on HOST:PORT" once ready (the tests read the port from it), and
// "shutdown complete" at the end. Try it with `nc 127.0.0.1 7777`, then Ctrl-C.
//
// The signals are blocked at the very start of main, before the runtime starts its
// threads (which inherit the mask): see <spindle/io/signals.hpp>.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <spindle/io.hpp>
#include <spindle/io/signals.hpp>
#include <spindle/spindle.hpp>
#include <spindle/waiting.hpp>

namespace {

void echo(spindle::TcpStream s) {
  char buf[16 * 1024];
  try {
    while (std::size_t n = s.read(buf, sizeof buf)) s.write_all(buf, n);
  } catch (const std::system_error&) {
    // A reset or a vanished peer ends this connection only. CancelledError (the
    // shutdown) is not a std::exception: it passes through and ends the task cancelled.
  }
}

int serve(uint16_t port, std::chrono::milliseconds grace) {
  spindle::Server srv = spindle::start_server(echo, "127.0.0.1", port);
  std::printf("listening on %s\n", srv.addresses()[0].to_string().c_str());
  std::fflush(stdout);

  const int sig = spindle::wait_signal({SIGINT, SIGTERM});
  std::printf("got %s: %zu connection(s) open, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
              srv.connections());
  std::fflush(stdout);

  srv.close();  // 1
  // 2 and 3: cancel the connections, then wait for them in slices, cancelling again
  // before each: a handler may catch one CancelledError and go on (as in asyncio), and a
  // connection accepted just as the server closed may register after the first sweep.
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (;;) {
    srv.close_clients();
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds(0)) {
      std::fprintf(stderr, "graceful_server: %zu connection(s) would not end within %lld ms\n", srv.connections(),
                   static_cast<long long>(grace.count()));
      for (auto& t : spindle::all_tasks())
        if (t != spindle::current_task())
          std::fprintf(stderr, "  task '%s' waits at %s\n", t.name().c_str(), spindle::to_string(t.where()).c_str());
      return 1;
    }
    try {
      spindle::timeout(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(100)),
                       [&] { srv.wait_closed(); });
      break;
    } catch (const spindle::TimeoutError&) {
    }
  }
  // 4: only this (main) task may be left.
  const std::size_t left = spindle::all_tasks().size();
  if (left > 1) {
    std::fprintf(stderr, "graceful_server: %zu task(s) still running\n", left - 1);
    return 1;
  }
  std::printf("shutdown complete\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so every thread inherits the mask.
  spindle::block_signals({SIGINT, SIGTERM});
  try {
    const uint16_t port = argc > 1 ? spindle::parse_port(argv[1]) : 7777;
    const unsigned workers = argc > 2 ? unsigned(std::atoi(argv[2])) : 0;
    const std::chrono::milliseconds grace(argc > 3 ? std::atoll(argv[3]) : 2000);
    return spindle::run([&] { return serve(port, grace); }, spindle::Options{.workers = workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "graceful_server: %s\n", e.what());
    return 1;
  }
}
