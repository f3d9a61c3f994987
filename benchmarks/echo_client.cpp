// The echo workload's load generator, written on spindle and used unchanged against
// spindle's echo server and Asio's (scripts/bench_net.py): CONNECTIONS connections, each
// a task that ping-pongs 64-byte messages (send one, read its echo back, check it) for
// SECONDS. Prints one JSON line: messages, seconds, messages_per_s.
//
//   echo_client PORT [SECONDS=5] [CONNECTIONS=64] [WORKERS=1] [HOST=127.0.0.1]
//
// Timing runs from just after every connection is open to just after the last task
// ended; a wrong echo fails the run (exit status 1).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include <spindle/io.hpp>
#include <spindle/spindle.hpp>

namespace {

constexpr std::size_t kMessage = 64;

unsigned arg(int argc, char** argv, int i, unsigned dflt, const char* what) {
  if (argc <= i) return dflt;
  char* end = nullptr;
  const unsigned long v = std::strtoul(argv[i], &end, 10);
  if (end == argv[i] || *end != '\0' || v == 0 || v > 100000)
    throw std::invalid_argument(std::string("echo_client: bad ") + what + ": '" + argv[i] + "'");
  return unsigned(v);
}

// One connection: ping-pong until the deadline; returns the round trips made.
uint64_t ping_pong(spindle::TcpStream& s, unsigned id, std::chrono::steady_clock::time_point deadline) {
  char out[kMessage];
  char in[kMessage];
  uint64_t n = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    // A different message every time, so that a stale or misrouted echo is caught.
    std::snprintf(out, sizeof out, "%08x %016llx ", id, static_cast<unsigned long long>(n));
    std::memset(out + 26, 'a' + char(n % 26), kMessage - 26);
    s.write_all(out, kMessage);
    s.read_exact(in, kMessage);
    if (std::memcmp(in, out, kMessage) != 0) throw std::runtime_error("echo_client: the echo differs from the message");
    ++n;
  }
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      std::fprintf(stderr, "usage: echo_client PORT [SECONDS=5] [CONNECTIONS=64] [WORKERS=1] [HOST=127.0.0.1]\n");
      return 2;
    }
    const uint16_t port = spindle::parse_port(argv[1]);
    const unsigned seconds = arg(argc, argv, 2, 5, "seconds");
    const unsigned conns = arg(argc, argv, 3, 64, "connection count");
    const unsigned workers = arg(argc, argv, 4, 1, "worker count");
    const std::string host = argc > 5 ? argv[5] : "127.0.0.1";
    spindle::run(
        [&] {
          std::vector<spindle::TcpStream> streams;
          streams.reserve(conns);
          for (unsigned i = 0; i < conns; ++i) {
            streams.push_back(spindle::TcpStream::connect(host, port, std::chrono::seconds(5)));
            streams.back().set_nodelay(true);
          }
          const auto t0 = std::chrono::steady_clock::now();
          const auto deadline = t0 + std::chrono::seconds(seconds);
          std::vector<spindle::Task<uint64_t>> tasks;
          tasks.reserve(conns);
          for (unsigned i = 0; i < conns; ++i)
            tasks.push_back(spindle::spawn([&s = streams[i], i, deadline] { return ping_pong(s, i, deadline); }));
          uint64_t total = 0;
          for (auto& t : tasks) total += t.get();
          const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          std::printf("{\"messages\": %llu, \"seconds\": %.3f, \"messages_per_s\": %.1f, \"connections\": %u}\n",
                      static_cast<unsigned long long>(total), secs, double(total) / secs, conns);
        },
        spindle::Options{.workers = workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_client: %s\n", e.what());
    return 1;
  }
}
