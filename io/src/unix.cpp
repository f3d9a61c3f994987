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
  try {
    p.first.src_ = detail::FdHandle::adopt(fds[0]);
  } catch (...) {
    ::close(fds[1]);
    throw;
  }
  p.second.src_ = detail::FdHandle::adopt(fds[1]);
  return p;
}

SocketAddress UnixStream::local_address() const {
  return detail::sock_name(src_.get("getsockname")->fd(), false, "getsockname");
}
SocketAddress UnixStream::peer_address() const {
  return detail::sock_name(src_.get("getpeername")->fd(), true, "getpeername");
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
    if (::listen(fd, backlog) != 0) {
      const int e = errno;
      ::close(fd);
      throw_errno(e, "listen");
    }
    src_ = detail::FdHandle::adopt(fd);
  } catch (...) {
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

UnixListener& UnixListener::operator=(UnixListener&& o) noexcept {
  if (this != &o) {
    close();
    src_ = std::move(o.src_);
    path_ = std::move(o.path_);
    dev_ = o.dev_;
    ino_ = o.ino_;
  }
  return *this;
}

UnixListener::~UnixListener() { close(); }

void UnixListener::close() noexcept {
  if (src_.close() && !path_.empty() && path_[0] != '@') unlink_if_mine(path_, dev_, ino_);
}

UnixStream UnixListener::accept(TimeLimit timeout) {
  detail::FdSource* l = src_.get("accept");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int fd = detail::accept_fd(l, &ss, &len, detail::deadline_of(timeout));
  UnixStream s;
  s.src_ = detail::FdHandle::adopt(fd);
  return s;
}

}  // namespace spindle
