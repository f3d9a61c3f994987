// The part the Boost.Asio peer servers share (peer_asio_http.cpp, peer_asio_echo.cpp):
// argument parsing, the listener, the accept loop and the io_context threads. Each peer
// supplies its Connection type: constructed from an accepted socket (TCP_NODELAY set),
// owned through shared_ptr, started with read().
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

namespace asio_peer {

namespace asio = boost::asio;
using asio::ip::tcp;

template <class Connection>
void accept(tcp::acceptor& acc) {
  acc.async_accept([&acc](boost::system::error_code ec, tcp::socket s) {
    if (!ec) {
      boost::system::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Connection>(std::move(s))->read();
    }
    accept<Connection>(acc);
  });
}

/// `NAME PORT [THREADS=1] [HOST=127.0.0.1]`: serves until killed. Returns the exit status.
template <class Connection>
int serve(const char* name, int argc, char** argv) {
  try {
    if (argc < 2) {
      std::fprintf(stderr, "usage: %s PORT [THREADS=1] [HOST=127.0.0.1]\n", name);
      return 2;
    }
    const int port = std::atoi(argv[1]);
    const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const char* host = argc > 3 ? argv[3] : "127.0.0.1";
    if (port < 0 || port > 65535 || threads < 1) {
      std::fprintf(stderr, "%s: bad port or thread count\n", name);
      return 2;
    }
    asio::io_context ioc(threads);
    tcp::acceptor acc(ioc, tcp::endpoint(asio::ip::make_address(host), static_cast<unsigned short>(port)));
    acc.listen(1024);
    accept<Connection>(acc);
    std::printf("listening on %s:%u with %d thread(s)\n", host, unsigned(acc.local_endpoint().port()), threads);
    std::fflush(stdout);
    std::vector<std::thread> extra;
    for (int i = 1; i < threads; ++i) extra.emplace_back([&ioc] { ioc.run(); });
    ioc.run();
    for (auto& t : extra) t.join();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace asio_peer
