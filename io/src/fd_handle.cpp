// FdHandle (see spindle/io/fd_handle.hpp).
#include <spindle/io/fd_handle.hpp>

#include <unistd.h>

#include "syscall.hpp"

namespace spindle::detail {

FdHandle FdHandle::adopt(int fd) {
  try {
    return FdHandle(new FdSource(fd));
  } catch (...) {
    ::close(fd);
    throw;
  }
}

bool FdHandle::close() noexcept {
  if (src_ == nullptr) return false;
  // Cleared only after the close sequence, which orders a blocked operation's read of
  // src_ (when it began) before this write: see the header comment.
  src_->close();
  src_ = nullptr;
  return true;
}

int FdHandle::fd() const noexcept { return src_ ? src_->fd() : -1; }

FdSource* FdHandle::get(const char* what) const {
  if (src_ == nullptr) throw_errno(EBADF, what);
  return src_;
}

}  // namespace spindle::detail
