// spindle-monitor: a client for a runtime's monitor console (Options::monitor,
// runtime/include/spindle/monitor.hpp).
//
//   spindle-monitor [unix:]PATH              relays stdin to the console and its answers
//                                            to stdout, until either side closes
//   spindle-monitor [unix:]PATH COMMAND...   runs one command, prints its answer, exits
//                                            (status 1 if the answer is an error)
//
// PATH may start with '@' for a socket in Linux's abstract namespace. Exit status 2: bad
// arguments or no connection (including a console that closes without a greeting: it
// serves only the user its process runs as, and root).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

int usage() {
  std::fprintf(stderr, "usage: spindle-monitor [unix:]PATH [COMMAND...]\n");
  return 2;
}

int connect_to(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path) {
    std::fprintf(stderr, "spindle-monitor: bad socket path '%s'\n", path.c_str());
    return -1;
  }
  std::memcpy(a.sun_path, path.data(), path.size());
  if (path[0] == '@') a.sun_path[0] = '\0';
  const auto len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    std::fprintf(stderr, "spindle-monitor: cannot connect to %s: %s\n", path.c_str(), std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = fd == STDOUT_FILENO ? ::write(fd, p, n) : ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= std::size_t(k);
  }
  return true;
}

// Reads one answer: lines up to the empty line that ends it (not included). False if the
// connection ended first.
bool read_answer(int fd, std::string& pending, std::string& answer) {
  for (;;) {
    const std::size_t end = pending.find("\n\n");
    if (end != std::string::npos) {
      answer = pending.substr(0, end + 1);
      pending.erase(0, end + 2);
      return true;
    }
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    pending.append(buf, std::size_t(n));
  }
}

// A console closes a connection from another user (not root) without a word.
const char* const kNoGreeting =
    "spindle-monitor: the console closed the connection without a greeting (it serves only the "
    "user its process runs as, and root)\n";

int one_command(int fd, const std::string& cmd) {
  std::string pending, answer;
  if (!read_answer(fd, pending, answer)) {  // the greeting
    std::fprintf(stderr, "%s", kNoGreeting);
    return 2;
  }
  const std::string line = cmd + "\n";
  if (!write_all(fd, line.data(), line.size()) || !read_answer(fd, pending, answer)) {
    std::fprintf(stderr, "spindle-monitor: the console closed the connection\n");
    return 2;
  }
  write_all(STDOUT_FILENO, answer.data(), answer.size());
  return answer.rfind("error:", 0) == 0 ? 1 : 0;
}

int relay(int fd) {
  pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {fd, POLLIN, 0}};
  bool stdin_open = true;
  bool heard = false;  // anything from the console yet
  for (;;) {
    fds[0].fd = stdin_open ? STDIN_FILENO : -1;  // poll ignores a negative fd
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 2;
    }
    char buf[4096];
    if (fds[1].revents) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // the console closed: done
        if (heard) return 0;
        std::fprintf(stderr, "%s", kNoGreeting);
        return 2;
      }
      heard = true;
      if (!write_all(STDOUT_FILENO, buf, std::size_t(n))) return 2;
    }
    if (stdin_open && fds[0].revents) {
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // End of input: the console answers what it has, then closes its side.
        stdin_open = false;
        ::shutdown(fd, SHUT_WR);
      } else if (!write_all(fd, buf, std::size_t(n))) {
        return 2;
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0) return usage();
  std::string path = argv[1];
  if (path.rfind("unix:", 0) == 0) path.erase(0, 5);
  const int fd = connect_to(path);
  if (fd < 0) return 2;
  int rc;
  if (argc > 2) {
    std::string cmd = argv[2];
    for (int i = 3; i < argc; ++i) cmd += std::string(" ") + argv[i];
    rc = one_command(fd, cmd);
  } else {
    rc = relay(fd);
  }
  ::close(fd);
  return rc;
}
