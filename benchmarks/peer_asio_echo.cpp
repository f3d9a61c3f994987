// An echo server written with Boost.Asio, the peer of examples/echo_server.cpp: every
// byte a client sends comes back to it; 16 KiB read buffer, TCP_NODELAY.
//
//   peer_asio_echo PORT [THREADS=1] [HOST=127.0.0.1]
//
// One io_context run by THREADS threads; each connection is one chain of
// read -> write -> read. Prints "listening on HOST:PORT" once it accepts.
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>

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
    asio::async_write(sock_, asio::buffer(buf_, n), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
      if (!ec) self->read();
    });
  }

  tcp::socket sock_;
  char buf_[16 * 1024];
};

void accept(tcp::acceptor& acc) {
  acc.async_accept([&acc](boost::system::error_code ec, tcp::socket s) {
    if (!ec) {
      boost::system::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Connection>(std::move(s))->read();
    }
    accept(acc);
  });
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      std::fprintf(stderr, "usage: peer_asio_echo PORT [THREADS=1] [HOST=127.0.0.1]\n");
      return 2;
    }
    const int port = std::atoi(argv[1]);
    const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const char* host = argc > 3 ? argv[3] : "127.0.0.1";
    if (port < 0 || port > 65535 || threads < 1) {
      std::fprintf(stderr, "peer_asio_echo: bad port or thread count\n");
      return 2;
    }
    asio::io_context ioc(threads);
    tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address(host), static_cast<unsigned short>(port)));
    acc.listen(1024);
    accept(acc);
    std::printf("listening on %s:%u with %d thread(s)\n", host, unsigned(acc.local_endpoint().port()), threads);
    std::fflush(stdout);
    std::vector<std::thread> extra;
    for (int i = 1; i < threads; ++i) extra.emplace_back([&ioc] { ioc.run(); });
    ioc.run();
    for (auto& t : extra) t.join();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "peer_asio_echo: %s\n", e.what());
    return 1;
  }
}
