// UnixStream and UnixListener.
#include <spindle/io/unix.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "syscall.hpp"

namespace spindle {

using detail::throw_errno;

UnixStream UnixStream::connect(std::string_view path, TimeLimit timeout) {
  const SocketAddress a = SocketAddress::from_path(path);
  UnixStream s;
  s.src_ = detail::connect_source(a, SOCK_STREAM, detail::deadline_of(timeout));
  return s;
}

std::pair<UnixStream, UnixStream> UnixStream::pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) throw_errno(errno, "socketpair");
  std::pair<UnixStream, UnixStream> p;
  p.first.src_ = new detail::FdSource(fds[0]);
  p.second.src_ = new detail::FdSource(fds[1]);
  return p;
}

SocketAddress UnixStream::local_address() const {
  return detail::sock_name(source("getsockname")->fd(), false, "getsockname");
}
SocketAddress UnixStream::peer_address() const {
  return detail::sock_name(source("getpeername")->fd(), true, "getpeername");
}

UnixListener::UnixListener(std::string_view path, int backlog) {
  const SocketAddress a = SocketAddress::from_path(path);  // refuses a bad path first
  const bool abstract = path[0] == '@';
  const std::string p(path);
  if (!abstract) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(p.c_str());  // a stale socket
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "socket");
  if (::bind(fd, a.data(), a.size()) != 0) {
    const int e = errno;
    ::close(fd);
    throw_errno(e, "bind");
  }
  if (!abstract) {
    // Remember which file bind made: close() removes the path only while it is still
    // this file, not one that a later listener put there after removing ours as stale.
    struct stat st;
    if (::stat(p.c_str(), &st) == 0) dev_ = st.st_dev, ino_ = st.st_ino;
  }
  try {
    if (::listen(fd, backlog) != 0) throw_errno(errno, "listen");
    src_ = new detail::FdSource(fd);
  } catch (...) {
    ::close(fd);
    if (!abstract) unlink_if_mine(p, dev_, ino_);
    throw;
  }
  path_ = p;
}

void UnixListener::unlink_if_mine(const std::string& path, dev_t dev, ino_t ino) noexcept {
  // stat-then-unlink is not atomic: a file swapped in between would still go. POSIX has
  // no unlink-if-same-inode; the window is two syscalls wide, as in asyncio.
  struct stat st;
  if (ino != 0 && ::stat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) ::unlink(path.c_str());
}

UnixListener::UnixListener(UnixListener&& o) noexcept
    : src_(std::exchange(o.src_, nullptr)), path_(std::move(o.path_)), dev_(o.dev_), ino_(o.ino_) {}

UnixListener& UnixListener::operator=(UnixListener&& o) noexcept {
  if (this != &o) {
    close();
    src_ = std::exchange(o.src_, nullptr);
    path_ = std::move(o.path_);
    dev_ = o.dev_;
    ino_ = o.ino_;
  }
  return *this;
}

UnixListener::~UnixListener() { close(); }

void UnixListener::close() noexcept {
  // Cleared after the close sequence, which orders a blocked accept's read of src_
  // before this write (SocketStream::close).
  if (src_ != nullptr) {
    src_->close();
    src_ = nullptr;
    if (!path_.empty() && path_[0] != '@') unlink_if_mine(path_, dev_, ino_);
  }
}

UnixStream UnixListener::accept(TimeLimit timeout) {
  if (!src_) throw_errno(EBADF, "accept");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int fd = detail::accept_fd(src_, &ss, &len, detail::deadline_of(timeout));
  UnixStream s;
  try {
    s.src_ = new detail::FdSource(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  return s;
}

}  // namespace spindle
