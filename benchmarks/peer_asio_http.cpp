// The http_plaintext workload's server written with Boost.Asio, the
// peer of examples/http_server.cpp: the same response (Server and Date included, the
// date formatted once per second per thread), same 16 KiB read buffer, same
// request counting ("\r\n\r\n" per request, pipelining and split reads handled), same
// 64-response write batches and 64 KiB head limit, keep-alive, TCP_NODELAY.
//
//   peer_asio_http PORT [THREADS=1] [HOST=127.0.0.1]
//
// One io_context run by THREADS threads (the usual Asio way to use several threads);
// each connection is one chain of read -> write -> read, so it needs no strand.
// Prints "listening on HOST:PORT" once it accepts; runs until killed.
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include "asio_server.hpp"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// The same response as the example's: Server and Date (RFC 9110 6.6.1), the date
// formatted at most once per second per thread, into this thread's batch of responses.
constexpr std::string_view kOkHead = "HTTP/1.1 200 OK\r\nServer: asio\r\nDate: ";
constexpr std::string_view kOkTail = "\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
constexpr std::size_t kDateLen = 29;  // IMF-fixdate always has 29 characters
constexpr std::size_t kResponseLen = kOkHead.size() + kDateLen + kOkTail.size();
constexpr std::string_view k431 =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kBatch = 64;  // responses per write at most

// kBatch responses carrying the current second's date. Each connection copies what it
// writes out of this (as the example copies into its write buffer), so a refresh never
// changes bytes a write in flight still reads.
const char* responses() {
  struct Batch {
    std::time_t sec = -1;
    char bytes[kBatch * kResponseLen];
  };
  static thread_local Batch b;
  const std::time_t t = std::time(nullptr);
  if (t != b.sec) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char date[kDateLen + 1];
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    for (std::size_t i = 0; i < kBatch; ++i) {
      char* r = b.bytes + i * kResponseLen;
      std::memcpy(r, kOkHead.data(), kOkHead.size());
      std::memcpy(r + kOkHead.size(), date, kDateLen);
      std::memcpy(r + kOkHead.size() + kDateLen, kOkTail.data(), kOkTail.size());
    }
    b.sec = t;
  }
  return b.bytes;
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(tcp::socket s) : sock_(std::move(s)) {}

  void read() {
    sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      if (!ec) self->on_read(n);
    });
  }

 private:
  void on_read(std::size_t n) {
    std::size_t requests = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const char c = buf_[i];
      if (c == "\r\n\r\n"[matched_]) {
        if (++matched_ == 4) {
          ++requests;
          matched_ = 0;
          head_len_ = 0;
          continue;
        }
      } else {
        matched_ = c == '\r' ? 1 : 0;
      }
      ++head_len_;
    }
    pending_ = requests;
    write();
  }

  // Writes the pending responses, kBatch at a time, then the 431 (and closes) or reads on.
  void write() {
    if (pending_ == 0) {
      if (head_len_ > kMaxHead) {
        asio::async_write(sock_, asio::buffer(k431.data(), k431.size()),
                          [self = shared_from_this()](boost::system::error_code, std::size_t) {});
        return;
      }
      read();
      return;
    }
    const std::size_t k = pending_ < kBatch ? pending_ : kBatch;
    pending_ -= k;
    std::memcpy(out_, responses(), k * kResponseLen);
    asio::async_write(sock_, asio::buffer(out_, k * kResponseLen),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (!ec) self->write();
                      });
  }

  tcp::socket sock_;
  char buf_[16 * 1024];
  char out_[kBatch * kResponseLen];  // the responses being written
  unsigned matched_ = 0;             // how much of "\r\n\r\n" the bytes so far end with
  std::size_t head_len_ = 0;         // bytes of the request head being read
  std::size_t pending_ = 0;          // responses still to write
};

}  // namespace

int main(int argc, char** argv) { return asio_peer::serve<Connection>("peer_asio_http", argc, argv); }
