#include "observe/monitor_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <spindle/metrics.hpp>
#include <spindle/monitor.hpp>

#include "observe/metrics_snapshot.hpp"
#include "sched/runtime_impl.hpp"
#include "observe/task_dump.hpp"

namespace spindle::detail {

namespace {

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

sockaddr_un make_address(const std::string& path, socklen_t& len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    throw std::invalid_argument("Options::monitor: the socket path must have 1 to " +
                                std::to_string(sizeof a.sun_path - 1) + " characters");
  std::memcpy(a.sun_path, path.data(), path.size());
  if (path[0] == '@') a.sun_path[0] = '\0';  // Linux's abstract namespace
  len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size());
  return a;
}

// A socket file at path that nobody serves is left over from a process that died: it
// may go. A live server, or a file that is not a socket, stays: that is an error.
void clear_stale(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) {
    errno = EEXIST;
    fail(("monitor: " + path + " exists and is not a socket").c_str());
  }
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) fail("monitor: socket");
  socklen_t len;
  const sockaddr_un a = make_address(path, len);
  const bool live = ::connect(probe, reinterpret_cast<const sockaddr*>(&a), len) == 0;
  ::close(probe);
  if (live) {
    errno = EADDRINUSE;
    fail(("monitor: another process serves " + path).c_str());
  }
  ::unlink(path.c_str());
}

// Sends what it can of s from off without blocking (the connection is non-blocking);
// advances off. False if the connection is gone.
bool send_some(int fd, const std::string& s, std::size_t& off) noexcept {
  while (off < s.size()) {
    // MSG_NOSIGNAL: a client that went away is EPIPE here, not a SIGPIPE for the program.
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += std::size_t(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);  // full: later; else gone
    }
  }
  return true;
}

// Whether the peer of a connection may use the console: the same effective uid as this
// process, or root. The credentials are the peer's at connect(), kept by the kernel.
bool peer_allowed(int fd, uid_t owner) noexcept {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) return false;
  return cred.uid == owner || cred.uid == 0;
}

const char* const kHelp =
    "commands:\n"
    "  ps          every live task: ID STATE LOOP AGE NAME WHERE (the file:line it waits at)\n"
    "  where ID    that task, and the call stack of its fibre if it is suspended\n"
    "  cancel ID   cancel that task (CancelledError at its suspension point)\n"
    "  stats       the runtime's metrics\n"
    "  help        this list\n"
    "  quit        close this connection\n";

// The id argument of where/cancel: digits only.
bool parse_id(const std::string& s, uint64_t& id) {
  if (s.empty() || s.size() > 19) return false;
  id = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    id = id * 10 + uint64_t(c - '0');
  }
  return true;
}

}  // namespace

MonitorServer::MonitorServer(RuntimeImpl* rt, const std::string& address) : rt_(rt), owner_(::geteuid()) {
  if (address.rfind("unix:", 0) != 0)
    throw std::invalid_argument("Options::monitor: '" + address +
                                "' is not a monitor address (expected \"unix:PATH\")");
  const std::string path = address.substr(5);
  socklen_t len;
  const sockaddr_un a = make_address(path, len);
  const bool abstract = path[0] == '@';
  if (!abstract) clear_stale(path);
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) fail("monitor: socket");
  try {
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&a), len) != 0) fail(("monitor: bind " + path).c_str());
    if (!abstract) {
      path_ = path;
      struct stat st;
      if (::stat(path.c_str(), &st) == 0) dev_ = st.st_dev, ino_ = st.st_ino;
      // The console can cancel tasks: only this user may connect. Nobody can connect
      // before listen(), so there is no window.
      if (::chmod(path.c_str(), 0600) != 0) fail(("monitor: chmod " + path).c_str());
    }
    if (::listen(listen_fd_, 8) != 0) fail("monitor: listen");
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) fail("monitor: eventfd");
  } catch (...) {
    ::close(listen_fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
    throw;
  }
}

MonitorServer::~MonitorServer() { stop(); }

void MonitorServer::start() {
  thread_ = std::thread([this] { serve(); });
}

void MonitorServer::stop() noexcept {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    // Remove the file only if it is still ours (not replaced by another server).
    struct stat st;
    if (!path_.empty() && ::stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
      ::unlink(path_.c_str());
  }
  if (wake_fd_ >= 0) {
    ::close(wake_fd_);
    wake_fd_ = -1;
  }
}

std::string MonitorServer::answer(const std::string& line, bool& quit) {
  std::istringstream in(line);
  std::string cmd, arg, extra;
  in >> cmd >> arg >> extra;
  std::ostringstream out;
  try {
    if (!extra.empty()) {
      out << "error: " << cmd << ": too many arguments\n";
    } else if (cmd == "help") {
      out << kHelp;
    } else if (cmd == "quit" || cmd == "exit") {
      quit = true;
      out << "bye\n";
    } else if (cmd == "ps") {
      if (!arg.empty()) {
        out << "error: ps takes no argument\n";
      } else {
        print_dump(out, dump_runtime(rt_, DumpOptions{}));
      }
    } else if (cmd == "stats") {
      if (!arg.empty())
        out << "error: stats takes no argument\n";
      else
        out << snapshot_metrics(rt_);
    } else if (cmd == "where" || cmd == "cancel") {
      uint64_t id;
      if (arg.empty()) {
        out << "error: " << cmd << " needs a task ID (see ps)\n";
      } else if (!parse_id(arg, id)) {
        out << "error: " << cmd << ": '" << arg << "' is not a task ID\n";
      } else {
        DumpResult d = dump_runtime(rt_, DumpOptions{});
        TaskInfo* t = nullptr;
        for (auto& x : d.tasks)
          if (x.id == id) t = &x;
        if (!t) {
          out << "error: no live task with ID " << id << "\n";
        } else if (cmd == "cancel") {
          if (t->task.cancel("cancelled from the monitor console"))
            out << "cancelled task " << id << " (" << t->name << ")\n";
          else
            out << "error: task " << id << " (" << t->name << ") is already done\n";
        } else {
          t->stack = task_stack(t->task);  // now: it may have moved since the dump
          if (!t->stack.empty()) t->where.state = TaskState::suspended;
          out << "task " << id << " (" << t->name << "): " << state_text(t->where);
          if (t->loop >= 0) out << " on loop " << t->loop;
          out << "\n";
          if (!t->where.file.empty()) out << "waits at " << where_text(t->where) << "\n";
          if (!t->stack.empty()) {
            out << "stack:\n";
            for (std::size_t i = 0; i < t->stack.size(); ++i) out << "  " << to_string(t->stack[i], i) << "\n";
          } else if (t->where.state == TaskState::suspended) {
            out << "stack: not available (resumed meanwhile, or no stack walker on this platform)\n";
          } else {
            out << "stack: only a suspended task's stack can be read\n";
          }
        }
      }
    } else {
      out << "error: unknown command '" << cmd << "' (try help)\n";
    }
  } catch (const std::exception& e) {
    out.str("");
    out << "error: " << e.what() << "\n";
  } catch (...) {
    out.str("");
    out << "error: the command failed\n";
  }
  std::string s = out.str();
  // The protocol's terminator is an empty line, so an answer never holds one.
  for (std::size_t p; (p = s.find("\n\n")) != std::string::npos;) s.erase(p, 1);
  if (s.empty() || s.back() != '\n') s += '\n';
  return s + "\n";
}

bool MonitorServer::pump(Client& c) {
  for (;;) {
    if (c.sent < c.out.size()) {
      if (!send_some(c.fd, c.out, c.sent)) return false;
      if (c.sent < c.out.size()) return true;  // full: the rest when poll says POLLOUT
    }
    c.out.clear();
    c.sent = 0;
    if (c.closing) return false;
    const std::size_t nl = c.in.find('\n');
    if (nl == std::string::npos) {
      if (c.in.size() > kMaxLine) {
        c.in.clear();
        c.out = "error: line longer than " + std::to_string(kMaxLine) + " bytes\n\n";
        continue;
      }
      return true;  // wait for more input
    }
    std::string line = c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank: nothing to answer
    c.out = answer(line, c.closing);
  }
}

void MonitorServer::accept_one(std::vector<Client>& clients) {
  const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  // Checked first, so that a stranger learns nothing, not even that the console is full.
  if (!peer_allowed(fd, owner_)) {
    ::close(fd);
    return;
  }
  if (clients.size() >= std::size_t(kMaxClients)) {
    std::size_t off = 0;
    send_some(fd, "error: too many monitor connections\n\n", off);  // best effort
    ::close(fd);
    return;
  }
  try {
    clients.push_back(Client{fd, {}, {}, 0, false});
  } catch (...) {
    ::close(fd);
    return;
  }
  Client& c = clients.back();
  c.out = "spindle monitor: " + std::to_string(rt_->workers.size()) + " loop(s), " + std::to_string(rt_->live_tasks()) +
          " live task(s); type help\n\n";
  if (!pump(c)) {
    ::close(fd);
    clients.pop_back();
  }
}

bool MonitorServer::serve_once(std::vector<Client>& clients) {
  std::vector<pollfd> fds;
  fds.push_back({wake_fd_, POLLIN, 0});
  fds.push_back({listen_fd_, POLLIN, 0});
  // A connection with an answer still to send is polled for room to send it only: its
  // further commands are not read until then (see monitor.hpp, slow clients).
  for (auto& c : clients) fds.push_back({c.fd, short(c.out.empty() ? POLLIN : POLLOUT), 0});
  if (::poll(fds.data(), fds.size(), -1) < 0) return errno != EINTR && errno != ENOMEM;  // else: poll again
  if (fds[0].revents) return true;                                                       // stop()
  // Clients first (their indices match fds[2..]), then a new connection.
  for (std::size_t i = clients.size(); i-- > 0;) {
    if (!fds[2 + i].revents) continue;
    Client& c = clients[i];
    bool keep = true;
    if (c.out.empty()) {
      char buf[4096];
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0)
        c.in.append(buf, std::size_t(n));
      else
        keep = n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK);
    }
    if (keep) keep = pump(c);
    if (!keep) {
      ::close(c.fd);
      clients.erase(clients.begin() + std::ptrdiff_t(i));
    }
  }
  if (fds[1].revents & POLLIN) accept_one(clients);
  return false;
}

void MonitorServer::serve() noexcept {
  std::vector<Client> clients;
  for (bool stopping = false; !stopping;) {
    try {
      stopping = serve_once(clients);
    } catch (...) {
      // Out of memory, most likely: drop the connections rather than the process.
      for (auto& c : clients) ::close(c.fd);
      clients.clear();
    }
  }
  for (auto& c : clients) ::close(c.fd);
}

}  // namespace spindle::detail
