// An echo server written with Boost.Asio, the peer of examples/echo_server.cpp: every
// byte a client sends comes back to it; 16 KiB read buffer, TCP_NODELAY.
//
//   peer_asio_echo PORT [THREADS=1] [HOST=127.0.0.1]
//
// One io_context run by THREADS threads; each connection is one chain of
// read -> write -> read. Prints "listening on HOST:PORT" once it accepts.
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include "asio_server.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(tcp::socket s) : sock_(std::move(s)) {}

  void read() {
    sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      if (!ec) self->write(n);
    });
  }

 private:
  void write(std::size_t n) {
    asio::async_write(sock_, asio::buffer(buf_, n),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket sock_;
  char buf_[16 * 1024];
};

}  // namespace

int main(int argc, char** argv) { return asio_peer::serve<Connection>("peer_asio_echo", argc, argv); }
