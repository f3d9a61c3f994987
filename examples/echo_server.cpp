// An echo server: every byte a client sends comes back to it.
//
//   echo_server [PORT=7777] [WORKERS=0 (one per CPU)] [HOST=127.0.0.1]
//
// Try it with `nc 127.0.0.1 7777`.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <spindle/io.hpp>
#include <spindle/spindle.hpp>

namespace {
void echo(spindle::TcpStream s) {
  char buf[16 * 1024];
  try {
    while (std::size_t n = s.read(buf, sizeof buf)) s.write_all(buf, n);
  } catch (const std::system_error&) {
    // A reset or a vanished peer ends this connection only.
  }
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const uint16_t port = argc > 1 ? spindle::parse_port(argv[1]) : 7777;
    const unsigned workers = argc > 2 ? unsigned(std::atoi(argv[2])) : 0;
    const char* host = argc > 3 ? argv[3] : "127.0.0.1";
    spindle::run(
        [&] {
          spindle::Server srv = spindle::start_server(echo, host, port, {.nodelay = true});
          std::printf("echo server listening on %s\n", srv.addresses()[0].to_string().c_str());
          std::fflush(stdout);
          srv.serve_forever();
        },
        spindle::Options{.workers = workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
