// The monitor console against hostile or careless clients: another user (on a path
// socket whose mode lets them in, and on an abstract socket, which has no mode) is closed
// without a word and none of its commands has effect; a client that sends commands and
// never reads stalls only itself.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include <spindle/monitor.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string unique_name(const char* kind) {
  static std::atomic<int> n{0};
  return std::string("spindle-security-") + kind + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

// "@name" is an abstract socket, anything else a path.
sockaddr_un address_of(const std::string& path, socklen_t& len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof a.sun_path);
  std::memcpy(a.sun_path, path.data(), path.size());
  if (path[0] == '@') a.sun_path[0] = '\0';
  len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size());
  return a;
}

int connect_to(const std::string& path) {
  socklen_t len;
  const sockaddr_un a = address_of(path, len);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  timeval tv{30, 0};  // a console that stops answering fails the test, not hangs it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::system_error(e, std::generic_category(), "connect " + path);
  }
  return fd;
}

// Reads one answer (up to its terminating empty line) from fd, keeping the rest in buf.
std::string read_answer(int fd, std::string& buf) {
  for (;;) {
    const auto end = buf.find("\n\n");
    if (end != std::string::npos) {
      std::string a = buf.substr(0, end + 1);
      buf.erase(0, end + 2);
      return a;
    }
    char tmp[4096];
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) throw std::runtime_error("console: connection ended or timed out; got so far: " + buf);
    buf.append(tmp, std::size_t(n));
  }
}

struct Console {
  explicit Console(const std::string& path) : fd(connect_to(path)) { greeting = read_answer(fd, buf); }
  ~Console() { ::close(fd); }
  std::string ask(const std::string& cmd) {
    const std::string line = cmd + "\n";
    REQUIRE(::send(fd, line.data(), line.size(), MSG_NOSIGNAL) == ssize_t(line.size()));
    return read_answer(fd, buf);
  }
  int fd;
  std::string buf, greeting;
};

// What the stranger child found, as its exit status.
enum Outcome : int {
  kClosedSilently = 0,  // connected, sent its commands, read EOF and nothing else
  kRefused = 1,         // connect failed with EACCES (the path socket's mode)
  kGotOutput = 2,       // the console said something: it served a stranger
  kTimedOut = 3,        // nothing, and no EOF either, for 30 s
  kNoPrivDrop = 4,      // could not become uid 65534
  kOtherError = 5,
};

// Forks a child that becomes uid/gid 65534 ("nobody"), connects to the console at
// `address` (filled in before the fork: the child only makes system calls, as a child of
// a threaded process must), sends `commands` and reads until the console closes.
// Returns the child's Outcome.
int stranger_tries(const std::string& path, const std::string& commands) {
  socklen_t len;
  const sockaddr_un a = address_of(path, len);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0 || ::getuid() != 65534)
      ::_exit(kNoPrivDrop);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) ::_exit(kOtherError);
    timeval tv{30, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0)
      ::_exit(errno == EACCES ? kRefused : kOtherError);
    // Errors ignored: the console may have closed already (EPIPE).
    [[maybe_unused]] auto sent = ::send(fd, commands.data(), commands.size(), MSG_NOSIGNAL);
    char c;
    const ssize_t n = ::recv(fd, &c, 1, 0);
    if (n > 0) ::_exit(kGotOutput);
    // ECONNRESET: closed while our commands were unread; as silent as EOF.
    if (n == 0 || errno == ECONNRESET) ::_exit(kClosedSilently);
    ::_exit(errno == EAGAIN || errno == EWOULDBLOCK ? kTimedOut : kOtherError);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("monitor console: another user is closed without a word on path and abstract sockets, and cancels nothing",
          "[monitor][security]") {
  const std::string path = "/tmp/" + unique_name("path") + ".sock";
  const std::string abstract = "@" + unique_name("abstract");
  Options o = test::opts(2);
  o.monitor = "unix:" + path;
  Runtime rt(o);
  o.monitor = "unix:" + abstract;
  Runtime rt2(o);  // the same process, a second runtime on an abstract socket

  auto sleeper = rt.spawn(TaskOptions{.name = "guarded"}, [] { test::forever(); });
  auto sleeper2 = rt2.spawn(TaskOptions{.name = "guarded2"}, [] { test::forever(); });
  test::until_suspended(sleeper);
  test::until_suspended(sleeper2);

  if (::geteuid() != 0) {
    WARN(
        "SKIPPED: the cross-user half of this test needs root (to become uid 65534 in a child); "
        "only the same-user half ran");
  } else {
    // The path socket is mode 0600: another user cannot even connect.
    CHECK(stranger_tries(path, "ps\n") == kRefused);
    // Its mode is not what guards it: with the file opened to everyone, the peer check
    // still closes the connection without a word.
    REQUIRE(::chmod(path.c_str(), 0666) == 0);
    const std::string cmds =
        "ps\nwhere " + std::to_string(sleeper.id()) + "\ncancel " + std::to_string(sleeper.id()) + "\n";
    CHECK(stranger_tries(path, cmds) == kClosedSilently);
    // An abstract socket has no mode at all.
    const std::string cmds2 = "ps\ncancel " + std::to_string(sleeper2.id()) + "\nstats\n";
    CHECK(stranger_tries(abstract, cmds2) == kClosedSilently);
  }

  // Nothing was cancelled: the same user still finds both tasks suspended, and can cancel.
  Console c(path);
  CHECK(contains(c.greeting, "spindle monitor"));
  CHECK(contains(c.ask("where " + std::to_string(sleeper.id())), "(guarded): suspended"));
  CHECK_FALSE(sleeper.done());
  Console c2(abstract);
  CHECK(contains(c2.ask("where " + std::to_string(sleeper2.id())), "(guarded2): suspended"));
  CHECK_FALSE(sleeper2.done());
  CHECK(contains(c.ask("cancel " + std::to_string(sleeper.id())), "cancelled task"));
  CHECK(contains(c2.ask("cancel " + std::to_string(sleeper2.id())), "cancelled task"));
  CHECK_THROWS_AS(sleeper.get(), CancelledError);
  CHECK_THROWS_AS(sleeper2.get(), CancelledError);
}

TEST_CASE("monitor console: a client that sends and never reads stalls only itself, and loses no answer",
          "[monitor][slow]") {
  const std::string path = "@" + unique_name("slow");
  Options o = test::opts(2);
  o.monitor = "unix:" + path;
  Runtime rt(o);

  Console other(path);  // connected first: the old console served it after the slow one

  // The slow client: one send of many commands (the console's first read takes 4096
  // bytes of them at once, about 800 commands, whose answers fill any socket buffer),
  // then it reads nothing.
  const int slow = connect_to(path);
  std::string slow_buf;
  read_answer(slow, slow_buf);  // the greeting
  const std::string cmd = "help\n";
  std::string burst;
  while (burst.size() < 64 * 1024) burst += cmd;
  const ssize_t sent = ::send(slow, burst.data(), burst.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  REQUIRE(sent > 4096);
  const std::size_t commands = std::size_t(sent) / cmd.size();  // a partial last one is never answered

  // Wait until the console has begun answering it (the burst is being served).
  for (int unread = 0; unread == 0;) {
    REQUIRE(::ioctl(slow, FIONREAD, &unread) == 0);
    if (unread == 0) std::this_thread::yield();
  }

  // Another client is answered meanwhile (bounded: Console reads with a 30 s timeout) ...
  CHECK(contains(other.ask("stats"), "live_tasks "));
  CHECK(contains(other.ask("help"), "cancel ID"));
  // ... and the slow one was not dropped to get there.
  pollfd p{slow, POLLRDHUP, 0};
  REQUIRE(::poll(&p, 1, 0) >= 0);
  CHECK((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0);

  // Once it reads, every command it sent has its answer, in order, and nothing more.
  std::size_t answered = 0;
  try {
    while (answered < commands && contains(read_answer(slow, slow_buf), "cancel ID")) ++answered;
  } catch (const std::exception& e) {
    FAIL_CHECK(e.what());
  }
  CHECK(answered == commands);
  ::shutdown(slow, SHUT_WR);  // the console closes once it has nothing left to answer
  char tmp[4096];
  ssize_t n;
  while ((n = ::recv(slow, tmp, sizeof tmp, 0)) > 0) slow_buf.append(tmp, std::size_t(n));
  CHECK(n == 0);
  CHECK(slow_buf.empty());
  ::close(slow);
}
