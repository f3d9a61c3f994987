// Helpers shared by the io_* tests (and others that need a socket): an fd-leak check, a
// plain blocking loopback client.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include <spindle/io.hpp>

#include "support.hpp"

namespace test {

// Fails the test if the fds open at its end differ from those at its start. Declare it
// before the Runtime, so that the runtime's own fds are gone when it checks.
struct FdLeakCheck {
  int before = open_fds();
  ~FdLeakCheck() { CHECK(open_fds() == before); }
};

// A server's connection handler that writes back whatever it reads, until EOF.
inline void echo_handler(spindle::TcpStream s) {
  char buf[4096];
  for (;;) {
    const std::size_t n = s.read(buf, sizeof buf);
    if (n == 0) return;
    s.write_all(buf, n);
  }
}

// A blocking loopback TCP connection to `port`, made without spindle; returns the fd
// (-1 if connect failed) and, if asked, its local port.
inline int raw_connect(uint16_t port, uint16_t* local_port = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0) return -1;
  if (local_port) {
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    *local_port = ntohs(a.sin_port);
  }
  return fd;
}

}  // namespace test
