// An HTTP/1.1 plaintext server, as benchmarks.md's http_plaintext workload defines it:
// each connection reads into a 16 KiB buffer and answers every request with the same
// fixed response, keeping the connection alive (pipelined requests and requests split
// across reads are handled); TCP_NODELAY is set on every connection. Request heads are
// checked by RequestScanner (http_parser.hpp): a malformed one gets 400, one longer than
// 64 KiB 431, Transfer-Encoding 501, each followed by a close; the server goes on
// serving the other connections.
//
// Timeouts, so that a client that stalls holds only its own connection:
//   --header-timeout=SECONDS (default 10): a request head must arrive whole within this
//       time of its first byte (slowloris), else the server answers 408 and closes;
//   --idle-timeout=SECONDS (default 60): a keep-alive connection with no request in
//       progress, or a read or write that makes no progress, for this long is closed.
//
//   http_server [PORT=8080] [WORKERS=1] [HOST=127.0.0.1] [reuse_port]
//               [--header-timeout=SECONDS] [--idle-timeout=SECONDS]
//
// `reuse_port` gives each worker its own listener (SO_REUSEPORT) and accept task.
// Load it with: wrk -t1 -c64 -d5s http://127.0.0.1:8080/plaintext
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io/io.hpp>
#include <spindle/spindle.hpp>

#include "http_parser.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using http_example::ScanError;

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kBatch = 64;                // responses per write at most
constexpr std::size_t kMaxDrain = 1024 * 1024;    // bytes read and dropped before closing after an error
constexpr std::chrono::seconds kMaxLinger{1};     // and for how long at most

// Set by main before the server starts, read-only afterwards.
struct Config {
  std::chrono::nanoseconds header_timeout = std::chrono::seconds(10);
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);
};
Config g_config;

// kBatch copies of the response back to back: n pipelined requests take one write
// per kBatch.
const std::string& responses() {
  static const std::string s = [] {
    std::string r;
    for (std::size_t i = 0; i < kBatch; ++i) r += kResponse;
    return r;
  }();
  return s;
}

std::string_view error_response(ScanError e) {
  switch (e) {
    case ScanError::too_large:
      return "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    case ScanError::not_implemented:
      return "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    default:
      return "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  }
}
constexpr std::string_view k408 = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

// Sends a last response and ends the connection: stops sending, then reads and drops
// what the client had already sent (at most kMaxDrain bytes for kMaxLinger), so that
// the close does not reset the connection before the client has read the response.
void send_and_linger(spindle::TcpStream& s, std::string_view last) {
  try {
    const Clock::time_point until = Clock::now() + std::min<Clock::duration>(kMaxLinger, g_config.idle_timeout);
    s.set_timeout(until - Clock::now());
    s.write_all(last);
    s.shutdown_write();
    char buf[16 * 1024];
    for (std::size_t dropped = 0; dropped < kMaxDrain;) {
      const auto left = until - Clock::now();
      if (left <= Clock::duration::zero()) return;
      s.set_timeout(left);
      const std::size_t n = s.read(buf, sizeof buf);
      if (n == 0) return;
      dropped += n;
    }
  } catch (const std::exception&) {
    // Timed out, reset or gone: the connection ends either way.
  }
}

void serve(spindle::TcpStream s) {
  const std::string& batch = responses();
  char buf[16 * 1024];
  http_example::RequestScanner scanner(kMaxHead);
  Clock::time_point head_deadline{};  // while scanner.in_head(): when the head must be whole
  try {
    for (;;) {
      const bool in_head = scanner.in_head();
      auto limit = g_config.idle_timeout;
      if (in_head) {
        const auto left = head_deadline - Clock::now();
        if (left <= Clock::duration::zero()) throw spindle::TimeoutError("request head");
        if (left < limit) limit = left;
      }
      s.set_timeout(limit);
      const std::size_t n = s.read(buf, sizeof buf);
      if (n == 0) return;  // the client closed
      const std::size_t requests = scanner.feed(buf, n);
      if (scanner.in_head() && (!in_head || requests > 0)) head_deadline = Clock::now() + g_config.header_timeout;
      if (requests > 0) s.set_timeout(g_config.idle_timeout);
      for (std::size_t left = requests; left > 0;) {
        const std::size_t k = left < kBatch ? left : kBatch;
        s.write_all(batch.data(), k * kResponse.size());
        left -= k;
      }
      if (scanner.error() != ScanError::none) {
        send_and_linger(s, error_response(scanner.error()));
        return;
      }
    }
  } catch (const spindle::TimeoutError&) {
    // Idle, or a head that did not arrive in time (408), or a client that stopped reading.
    if (scanner.in_head()) send_and_linger(s, k408);
  } catch (const std::system_error&) {
    // The client reset the connection or vanished: only this connection ends.
  }
}

// "--name=SECONDS" → the duration; throws std::invalid_argument naming the option.
std::chrono::nanoseconds parse_seconds(std::string_view arg, std::string_view name) {
  const std::string v(arg.substr(name.size() + 1));
  char* end = nullptr;
  const double sec = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(sec > 0) || sec > 1e6)
    throw std::invalid_argument(std::string(name) + ": expected a positive number of seconds, got '" + v + "'");
  return std::chrono::nanoseconds(static_cast<int64_t>(sec * 1e9));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<const char*> pos;
    for (int i = 1; i < argc; ++i) {
      const std::string_view a = argv[i];
      if (a.starts_with("--header-timeout=")) {
        g_config.header_timeout = parse_seconds(a, "--header-timeout");
      } else if (a.starts_with("--idle-timeout=")) {
        g_config.idle_timeout = parse_seconds(a, "--idle-timeout");
      } else if (a.starts_with("--")) {
        throw std::invalid_argument("unknown option '" + std::string(a) + "'");
      } else {
        pos.push_back(argv[i]);
      }
    }
    const uint16_t port = pos.size() > 0 ? spindle::parse_port(pos[0]) : 8080;
    const unsigned workers = pos.size() > 1 ? unsigned(std::atoi(pos[1])) : 1;
    const char* host = pos.size() > 2 ? pos[2] : "127.0.0.1";
    const bool reuse_port = pos.size() > 3 && std::strcmp(pos[3], "reuse_port") == 0;
    spindle::run(
        [&] {
          spindle::Server srv =
              spindle::start_server(serve, host, port, {.reuse_port = reuse_port, .nodelay = true});
          std::printf("http server listening on %s with %u worker(s)%s\n", srv.addresses()[0].to_string().c_str(),
                      workers, reuse_port ? ", one listener per worker" : "");
          std::fflush(stdout);
          srv.serve_forever();
        },
        spindle::Options{.workers = workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_server: %s\n", e.what());
    return 1;
  }
}
