// Graceful shutdown on signals: examples/graceful_server, run as a child process, gets
// SIGTERM (or SIGINT) while clients are connected, must end their connections and exit
// 0 within a bounded time, with nothing reported on stderr (no task that would not end).
//
// The child's path comes from SPINDLE_GRACEFUL_SERVER (set by tests/meson.build).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

extern char** environ;

using namespace std::chrono_literals;

namespace {

// Reads what is available on fd into out, waiting up to `ms` for the first byte.
// Returns false on timeout, true on data or EOF (eof set).
bool read_some(int fd, std::string& out, int ms, bool* eof = nullptr) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  char buf[4096];
  const ssize_t r = ::read(fd, buf, sizeof buf);
  if (r > 0) out.append(buf, std::size_t(r));
  if (eof) *eof = r == 0;
  return true;
}

int connect_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

struct Child {
  pid_t pid = -1;
  int out = -1;  // its stdout
  int err = -1;  // its stderr
};

Child start(const char* path, std::vector<std::string> args) {
  int o[2], e[2];
  REQUIRE(::pipe2(o, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(e, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, o[1], 1);
  posix_spawn_file_actions_adddup2(&fa, e[1], 2);
  std::vector<char*> argv{const_cast<char*>(path)};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Child c;
  const int rc = posix_spawn(&c.pid, path, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(o[1]);
  ::close(e[1]);
  c.out = o[0];
  c.err = e[0];
  REQUIRE(rc == 0);
  return c;
}

// waitpid with a bound: returns the status, or kills the child and returns -1.
int wait_bounded(pid_t pid, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(5ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

std::string drain(int fd) {
  std::string s;
  bool eof = false;
  while (read_some(fd, s, 1000, &eof) && !eof) {
  }
  return s;
}

}  // namespace

TEST_CASE("SIGTERM or SIGINT makes graceful_server end its connections and exit 0", "[executors][shutdown]") {
  const int sig = GENERATE(SIGTERM, SIGINT);
  const unsigned workers = GENERATE(1u, 2u, 4u);
  const char* path = std::getenv("SPINDLE_GRACEFUL_SERVER");
  REQUIRE(path != nullptr);
  INFO("signal " << sig << ", " << workers << " worker(s)");
  Child c = start(path, {"0", std::to_string(workers), "3000"});

  // "listening on 127.0.0.1:PORT\n"
  std::string out;
  const auto ready_by = std::chrono::steady_clock::now() + 20s;
  while (out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < ready_by) read_some(c.out, out, 100);
  INFO("child stdout: " << out);
  const auto colon = out.rfind(':', out.find('\n'));
  REQUIRE(colon != std::string::npos);
  const int port = std::atoi(out.c_str() + colon + 1);
  REQUIRE(port > 0);

  // Three clients, each echoed once: their handler tasks are now parked in read().
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) {
    const int fd = connect_loopback(uint16_t(port));
    REQUIRE(fd >= 0);
    const std::string msg = "ping " + std::to_string(i) + "\n";
    REQUIRE(::write(fd, msg.data(), msg.size()) == ssize_t(msg.size()));
    std::string echoed;
    while (echoed.size() < msg.size() && read_some(fd, echoed, 10'000)) {
    }
    CHECK(echoed == msg);
    clients.push_back(fd);
  }

  REQUIRE(::kill(c.pid, sig) == 0);

  // Every client sees its connection closed by the server (EOF or a reset).
  for (int fd : clients) {
    std::string rest;
    bool eof = false;
    pollfd p{fd, POLLIN, 0};
    const bool woke = ::poll(&p, 1, 10'000) == 1;
    CHECK(woke);
    if (woke) {
      char b;
      const ssize_t r = ::read(fd, &b, 1);
      eof = r <= 0;
    }
    CHECK(eof);
    ::close(fd);
  }

  const int status = wait_bounded(c.pid, 15s);
  out += drain(c.out);
  const std::string err = drain(c.err);
  ::close(c.out);
  ::close(c.err);
  INFO("child stdout: " << out);
  INFO("child stderr: " << err);
  REQUIRE(status != -1);  // -1: it did not exit in time and was killed
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(out.find("shutdown complete") != std::string::npos);
  CHECK(err.empty());  // no task that would not end, no unretrieved exception
}
