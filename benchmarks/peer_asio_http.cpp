// The http_plaintext workload's server written with Boost.Asio, the
// peer of examples/http_server.cpp: same response bytes, same 16 KiB read buffer, same
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

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
constexpr std::string_view k431 =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kBatch = 64;  // responses per write at most

const std::string& responses() {
  static const std::string s = [] {
    std::string r;
    for (std::size_t i = 0; i < kBatch; ++i) r += kResponse;
    return r;
  }();
  return s;
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
    asio::async_write(sock_, asio::buffer(responses().data(), k * kResponse.size()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (!ec) self->write();
                      });
  }

  tcp::socket sock_;
  char buf_[16 * 1024];
  unsigned matched_ = 0;       // how much of "\r\n\r\n" the bytes so far end with
  std::size_t head_len_ = 0;   // bytes of the request head being read
  std::size_t pending_ = 0;    // responses still to write
};

}  // namespace

int main(int argc, char** argv) { return asio_peer::serve<Connection>("peer_asio_http", argc, argv); }
