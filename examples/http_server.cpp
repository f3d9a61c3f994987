// An HTTP/1.1 plaintext server, exactly as benchmarks.md's http_plaintext workload
// defines it: each connection reads into a 16 KiB buffer, counts every "\r\n\r\n" as
// one request (so pipelined requests and requests split across reads are handled),
// and answers each with the same fixed response, keeping the connection alive.
// TCP_NODELAY is set on every connection. A request head longer than 64 KiB gets a
// 431 and the connection is closed; the server goes on serving the others.
//
//   http_server [PORT=8080] [WORKERS=1] [HOST=127.0.0.1] [reuse_port]
//
// `reuse_port` gives each worker its own listener (SO_REUSEPORT) and accept task.
// Load it with: wrk -t1 -c64 -d5s http://127.0.0.1:8080/plaintext
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

#include <spindle/io/io.hpp>
#include <spindle/spindle.hpp>

namespace {

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
constexpr std::string_view k431 =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kBatch = 64;  // responses per write at most

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

void serve(spindle::TcpStream s) {
  const std::string& batch = responses();
  char buf[16 * 1024];
  unsigned matched = 0;       // how much of "\r\n\r\n" the bytes so far end with
  std::size_t head_len = 0;   // bytes of the request head being read
  try {
    for (;;) {
      const std::size_t n = s.read(buf, sizeof buf);
      if (n == 0) return;  // the client closed
      std::size_t requests = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const char c = buf[i];
        if (c == "\r\n\r\n"[matched]) {
          if (++matched == 4) {
            ++requests;
            matched = 0;
            head_len = 0;
            continue;
          }
        } else {
          matched = c == '\r' ? 1 : 0;
        }
        ++head_len;
      }
      for (std::size_t left = requests; left > 0;) {
        const std::size_t k = left < kBatch ? left : kBatch;
        s.write_all(batch.data(), k * kResponse.size());
        left -= k;
      }
      if (head_len > kMaxHead) {
        s.write_all(k431);
        return;
      }
    }
  } catch (const std::system_error&) {
    // The client reset the connection or vanished: only this connection ends.
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const uint16_t port = argc > 1 ? spindle::parse_port(argv[1]) : 8080;
    const unsigned workers = argc > 2 ? unsigned(std::atoi(argv[2])) : 1;
    const char* host = argc > 3 ? argv[3] : "127.0.0.1";
    const bool reuse_port = argc > 4 && std::strcmp(argv[4], "reuse_port") == 0;
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
