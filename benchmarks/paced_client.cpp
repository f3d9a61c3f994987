// The paced HTTP load of the light-load workload (scripts/bench_net.py): a fixed rate of
// GET requests spread evenly over CONNECTIONS keep-alive connections for SECONDS, used
// unchanged against spindle's HTTP example and the Asio peer. Unlike wrk, which sends the
// next request as soon as a response arrives, the schedule does not depend on the server:
// request k (counting over all connections) is due at t0 + k / RATE, and connection c
// sends requests c, c + CONNECTIONS, ... So the server sees the same work whatever its
// speed, and what is compared is the CPU it spends on that work.
//
//   paced_client PORT [RATE=2000] [SECONDS=5] [CONNECTIONS=16] [HOST=127.0.0.1]
//
// Prints one JSON line: requests, seconds, target_per_s, requests_per_s, p50_ms, p99_ms,
// max_ms, late. A request's latency runs from the time it was due (not the time it went
// out), so a slow response that delays the next send on its connection is counted in
// that request's latency too (no coordinated omission). `late` counts requests sent more
// than one period after they were due. Any error (connect, a short or non-200 response,
// a 5 s stall) fails the run: exit status 1 and a message on stderr.
//
// Plain threads and blocking sockets, one thread per connection, no spindle: the client
// stays the same while the runtime under test changes.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

namespace {

constexpr std::string_view kRequest = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

using Clock = std::chrono::steady_clock;

unsigned arg(int argc, char** argv, int i, unsigned dflt, const char* what) {
  if (argc <= i) return dflt;
  char* end = nullptr;
  const unsigned long v = std::strtoul(argv[i], &end, 10);
  if (end == argv[i] || *end != '\0' || v == 0 || v > 1'000'000)
    throw std::invalid_argument(std::string("paced_client: bad ") + what + ": '" + argv[i] + "'");
  return unsigned(v);
}

[[noreturn]] void fail_errno(const char* op) { throw std::system_error(errno, std::generic_category(), op); }

int connect_to(const std::string& host, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    throw std::invalid_argument("paced_client: not an IPv4 address: '" + host + "'");
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_errno("socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    close(fd);
    throw std::system_error(e, std::generic_category(), "connect");
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const timeval stall{5, 0};  // a server that stops answering fails the run, not hangs it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &stall, sizeof stall);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stall, sizeof stall);
  return fd;
}

void sleep_until(Clock::time_point t) {
  // steady_clock is CLOCK_MONOTONIC on Linux; an absolute deadline does not drift.
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  const timespec ts{time_t(ns / 1'000'000'000), long(ns % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

/// Reads one whole response (head and Content-Length body) from fd; throws unless it is a 200.
void read_response(int fd, std::string& buf) {
  buf.clear();
  std::size_t head_end = std::string::npos, want = 0;
  char chunk[4096];
  for (;;) {
    if (head_end == std::string::npos) {
      head_end = buf.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        if (buf.compare(0, 13, "HTTP/1.1 200 ") != 0)
          throw std::runtime_error("paced_client: not a 200 response: '" + buf.substr(0, 40) + "'");
        const std::size_t cl = buf.find("Content-Length:");
        if (cl == std::string::npos || cl > head_end) throw std::runtime_error("paced_client: no Content-Length");
        want = head_end + 4 + std::strtoul(buf.c_str() + cl + 15, nullptr, 10);
      }
    }
    if (head_end != std::string::npos && buf.size() >= want) {
      if (buf.size() > want) throw std::runtime_error("paced_client: bytes beyond the response");
      return;
    }
    const ssize_t n = read(fd, chunk, sizeof chunk);
    if (n > 0) {
      buf.append(chunk, std::size_t(n));
    } else if (n == 0) {
      throw std::runtime_error("paced_client: the server closed the connection");
    } else if (errno != EINTR) {
      fail_errno(errno == EAGAIN ? "read (no response within 5 s)" : "read");
    }
  }
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(std::size_t(n));
    } else if (n < 0 && errno != EINTR) {
      fail_errno("write");
    }
  }
}

struct Connection {
  int fd = -1;
  std::vector<double> latency_ms;
  uint64_t late = 0;
  Clock::time_point last_done{};
  std::string error;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      std::fprintf(stderr, "usage: paced_client PORT [RATE=2000] [SECONDS=5] [CONNECTIONS=16] [HOST=127.0.0.1]\n");
      return 2;
    }
    const unsigned port = arg(argc, argv, 1, 0, "port");
    const unsigned rate = arg(argc, argv, 2, 2000, "rate");
    const unsigned seconds = arg(argc, argv, 3, 5, "seconds");
    const unsigned conns = arg(argc, argv, 4, 16, "connection count");
    const std::string host = argc > 5 ? argv[5] : "127.0.0.1";
    if (port > 65535) throw std::invalid_argument("paced_client: bad port");
    const uint64_t total = uint64_t(rate) * seconds;
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));

    std::vector<Connection> cs(conns);
    for (auto& c : cs) c.fd = connect_to(host, uint16_t(port));
    // Every thread starts from the same t0, a little ahead so that all are waiting for it.
    const auto t0 = Clock::now() + std::chrono::milliseconds(20);
    std::vector<std::thread> threads;
    threads.reserve(conns);
    for (unsigned ci = 0; ci < conns; ++ci) {
      threads.emplace_back([&, ci] {
        Connection& c = cs[ci];
        std::string buf;
        c.latency_ms.reserve(std::size_t(total / conns + 1));
        try {
          for (uint64_t k = ci; k < total; k += conns) {
            const auto due = t0 + period * k;
            sleep_until(due);
            if (Clock::now() - due > period) ++c.late;
            write_all(c.fd, kRequest);
            read_response(c.fd, buf);
            c.last_done = Clock::now();
            c.latency_ms.push_back(std::chrono::duration<double, std::milli>(c.last_done - due).count());
          }
        } catch (const std::exception& e) {
          c.error = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();

    std::vector<double> all;
    all.reserve(std::size_t(total));
    uint64_t late = 0;
    auto end = t0;
    for (auto& c : cs) {
      close(c.fd);
      if (!c.error.empty()) throw std::runtime_error(c.error);
      all.insert(all.end(), c.latency_ms.begin(), c.latency_ms.end());
      late += c.late;
      end = std::max(end, c.last_done);
    }
    if (all.size() != total) throw std::runtime_error("paced_client: fewer responses than requests");
    std::sort(all.begin(), all.end());
    auto pct = [&](double p) { return all[std::min(all.size() - 1, std::size_t(p * double(all.size())))]; };
    const double secs = std::chrono::duration<double>(end - t0).count();
    std::printf(
        "{\"requests\": %llu, \"seconds\": %.3f, \"target_per_s\": %u, \"requests_per_s\": %.1f, "
        "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, \"late\": %llu, \"connections\": %u}\n",
        static_cast<unsigned long long>(all.size()), secs, rate, double(all.size()) / secs, pct(0.50), pct(0.99),
        all.back(), static_cast<unsigned long long>(late), conns);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "paced_client: %s\n", e.what());
    return 1;
  }
}
