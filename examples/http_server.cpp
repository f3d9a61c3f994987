// An HTTP/1.1 plaintext server, as the benchmark suite's http_plaintext workload defines it:
// every request gets the same "Hello, World!" (without the body for HEAD). Requests are
// read by RequestScanner (http_parser.hpp), which handles pipelining, requests split
// across reads, Content-Length and chunked bodies, and RFC 9112's faults; the responses
// to the requests of one read go out in one write. TCP_NODELAY is set on every connection.
//
// HTTP semantics (RFC 9110, 9112):
//  - every response has Server and Date (formatted once per second per thread);
//  - persistence: HTTP/1.1 keeps the connection unless "Connection: close"; HTTP/1.0 only
//    with "Connection: keep-alive", echoed in the response. The last response on a
//    connection says "Connection: close", then the server closes;
//  - "Expect: 100-continue" (HTTP/1.1, with a body) gets "100 Continue" when the head has
//    been read; the 200 follows once the whole body has been;
//  - a fault gets its status (400, 414, 431, 501, 505; see http_parser.hpp), then the
//    close; the server goes on serving the other connections.
//
// Timeouts, so that a client that stalls holds only its own connection:
//   --header-timeout=SECONDS (default 10): a request head must arrive whole within this
//       time of its first byte (slowloris), else the server answers 408 and closes;
//   --idle-timeout=SECONDS (default 60): a keep-alive connection with no request in
//       progress, or a read or write that makes no progress, for this long is closed.
//
// Execution trace: --trace=FILE records the runtime's trace (Options::trace) into FILE;
// SIGINT or SIGTERM then stops the server and the runtime, which finishes the file. Open
// it in ui.perfetto.dev or summarise it with scripts/trace_report.py.
//
//   http_server [PORT=8080] [WORKERS=1] [HOST=127.0.0.1] [reuse_port]
//               [--header-timeout=SECONDS] [--idle-timeout=SECONDS] [--trace=FILE]
//
// `reuse_port` gives each worker its own listener (SO_REUSEPORT) and accept task.
// Load it with: wrk -t1 -c64 -d5s http://127.0.0.1:8080/plaintext
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io.hpp>
#include <spindle/spindle.hpp>

#include "http_parser.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using http_example::Event;
using http_example::RequestInfo;
using http_example::ScanError;

constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kMaxTarget = 8 * 1024;
constexpr std::size_t kOut = 8 * 1024;          // responses gathered before a write
constexpr std::size_t kMaxResponse = 256;       // the longest response head and body
constexpr std::size_t kMaxDrain = 1024 * 1024;  // bytes read and dropped before closing after an error
constexpr std::chrono::seconds kMaxLinger{1};   // and for how long at most

// Set by main before the server starts, read-only afterwards.
struct Config {
  std::chrono::nanoseconds header_timeout = std::chrono::seconds(10);
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);
};
Config g_config;

constexpr std::string_view kBody = "Hello, World!";
constexpr std::string_view kOkHead = "HTTP/1.1 200 OK\r\nServer: spindle\r\nDate: ";
constexpr std::string_view kOkTail = "\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
constexpr std::size_t kDateLen = 29;  // IMF-fixdate (RFC 9110 5.6.7) always has 29 characters

// The Date header's value, formatted at most once per second per thread (each thread
// keeps the second it last formatted), and with it the whole common response (200,
// HTTP/1.1 keep-alive, not HEAD), so that answering a plain request is one copy.
class DateCache {
 public:
  DateCache() noexcept {
    std::memcpy(ok_, kOkHead.data(), kOkHead.size());
    std::memcpy(ok_ + kOkHead.size() + kDateLen, kOkTail.data(), kOkTail.size());
  }
  // Refreshes the date if the second has changed.
  void refresh() noexcept {
    const std::time_t t = std::time(nullptr);
    if (t == sec_) return;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[kDateLen + 1];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);  // "C" locale names
    std::memcpy(ok_ + kOkHead.size(), text, kDateLen);
    sec_ = t;
  }
  std::string_view date() const noexcept { return {ok_ + kOkHead.size(), kDateLen}; }
  std::string_view ok() const noexcept { return {ok_, sizeof ok_}; }

 private:
  std::time_t sec_ = -1;
  char ok_[kOkHead.size() + kDateLen + kOkTail.size()];
};
// This thread's cache. Not inlined: a task may resume on another thread after a write,
// and the compiler may keep a thread_local's address across calls within one function.
[[gnu::noinline]] DateCache& this_thread_date() noexcept {
  static thread_local DateCache cache;
  return cache;
}

// Writes responses into a buffer on the connection's stack: requests answered in one
// read go out in one write. Every response has Server and Date (RFC 9110 6.6.1).
class Out {
 public:
  explicit Out(spindle::TcpStream& s) : s_(s) {}
  // Adds the response to a request: `body` is kBody or empty.
  void add(std::string_view status, const RequestInfo& r, bool close, std::string_view body) {
    if (len_ + kMaxResponse > kOut) flush();
    if (date_ == nullptr) {  // the date once per batch of responses (no write, so no thread change, within one)
      date_ = &this_thread_date();
      date_->refresh();
    }
    if (!close && !r.http10 && !r.head && !body.empty()) {  // the common case: one copy
      put(date_->ok());
      return;
    }
    put("HTTP/1.1 ");
    put(status);
    put("\r\nServer: spindle\r\nDate: ");
    put(date_->date());
    put(body.empty() ? "\r\nContent-Length: 0" : "\r\nContent-Length: 13\r\nContent-Type: text/plain");
    // RFC 9112 9.3: an HTTP/1.0 client keeps the connection only when told keep-alive;
    // the last response on a connection says close.
    if (close)
      put("\r\nConnection: close");
    else if (r.http10)
      put("\r\nConnection: keep-alive");
    put("\r\n\r\n");
    if (!r.head) put(body);
  }
  void add_raw(std::string_view bytes) {
    if (len_ + bytes.size() > kOut) flush();
    put(bytes);
  }
  void flush() {
    const std::size_t n = len_;
    len_ = 0;  // also when the write throws: the connection ends then
    date_ = nullptr;
    if (n > 0) s_.write_all(buf_, n);
  }
  std::size_t size() const noexcept { return len_; }

 private:
  void put(std::string_view v) noexcept {
    if (v.empty()) return;  // an empty view's data() may be null, which memcpy must not get
    std::memcpy(buf_ + len_, v.data(), v.size());
    len_ += v.size();
  }
  spindle::TcpStream& s_;
  DateCache* date_ = nullptr;  // this thread's, refreshed for this batch (until the next write)
  std::size_t len_ = 0;
  char buf_[kOut];
};

std::string_view error_status(ScanError e) {
  switch (e) {
    case ScanError::too_large:
      return "431 Request Header Fields Too Large";
    case ScanError::uri_too_long:
      return "414 URI Too Long";
    case ScanError::not_implemented:
      return "501 Not Implemented";
    case ScanError::bad_version:
      return "505 HTTP Version Not Supported";
    default:
      return "400 Bad Request";
  }
}

// Ends the connection after its last response (already written): stops sending, then
// reads and drops what the client had already sent (at most kMaxDrain bytes for
// kMaxLinger), so that the close does not reset the connection before the client has
// read the response.
void linger(spindle::TcpStream& s) {
  try {
    const Clock::time_point until = Clock::now() + std::min<Clock::duration>(kMaxLinger, g_config.idle_timeout);
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

// Sends a last response (an error) and ends the connection.
void send_and_linger(spindle::TcpStream& s, Out& out, std::string_view status) {
  try {
    s.set_timeout(std::min<Clock::duration>(kMaxLinger, g_config.idle_timeout));
    out.add(status, RequestInfo{}, true, {});
    out.flush();
  } catch (const std::exception&) {
    return;
  }
  linger(s);
}

void serve(spindle::TcpStream s) {
  char buf[16 * 1024];
  Out out(s);
  http_example::RequestScanner scanner(kMaxHead, kMaxTarget);
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
      bool any = false, close = false;
      for (std::size_t used = 0; used < n && !close;) {
        used += scanner.feed(buf + used, n - used);
        switch (scanner.event()) {
          case Event::request:
            any = true;
            close = !scanner.request().keep_alive;
            out.add("200 OK", scanner.request(), close, kBody);
            break;
          case Event::expect:  // RFC 9110 10.1.1: the client waits for this before the body
            any = true;
            out.add_raw("HTTP/1.1 100 Continue\r\n\r\n");
            break;
          case Event::none:
            break;
        }
        if (scanner.error() != ScanError::none) break;
      }
      if (scanner.in_head() && (!in_head || any)) head_deadline = Clock::now() + g_config.header_timeout;
      if (any) s.set_timeout(g_config.idle_timeout);
      if (scanner.error() != ScanError::none && !close) {
        send_and_linger(s, out, error_status(scanner.error()));
        return;
      }
      out.flush();
      if (close) {
        linger(s);
        return;
      }
    }
  } catch (const spindle::TimeoutError&) {
    // Idle, or a head that did not arrive in time (408), or a client that stopped reading.
    if (scanner.in_head()) send_and_linger(s, out, "408 Request Timeout");
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
    std::string trace;
    for (int i = 1; i < argc; ++i) {
      const std::string_view a = argv[i];
      if (a.starts_with("--header-timeout=")) {
        g_config.header_timeout = parse_seconds(a, "--header-timeout");
      } else if (a.starts_with("--idle-timeout=")) {
        g_config.idle_timeout = parse_seconds(a, "--idle-timeout");
      } else if (a.starts_with("--trace=")) {
        trace = std::string(a.substr(8));
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
    // Traced, the signals that stop the server are waited for (blocked before the runtime
    // starts its threads, which inherit the mask), so that the trace is finished.
    if (!trace.empty()) spindle::block_signals({SIGINT, SIGTERM});
    spindle::Options opts{.workers = workers};
    opts.trace = trace;
    spindle::run(
        [&] {
          spindle::Server srv = spindle::start_server(
              serve, host, port, {.reuse_port = reuse_port, .nodelay = true, .connection_name = "http connection"});
          std::printf("http server listening on %s with %u worker(s)%s\n", srv.addresses()[0].to_string().c_str(),
                      workers, reuse_port ? ", one listener per worker" : "");
          std::fflush(stdout);
          if (opts.trace.empty()) return srv.serve_forever();
          spindle::wait_signal({SIGINT, SIGTERM});
          srv.close();  // and run() cancels the connections, then stops the trace
        },
        opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_server: %s\n", e.what());
    return 1;
  }
}
