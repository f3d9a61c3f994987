// FdHandle: the owner of one FdSource (a non-blocking fd and its lazy registration with a
// loop), the part every socket class shares: adopting an fd, moving, closing, the fd
// itself, and refusing a closed handle with EBADF. Internal (namespace spindle::detail):
// a member of SocketStream, TcpListener, UnixListener and UdpSocket, not an API.
//
// Threads: as the owning class's. close() may run while another fibre or thread is blocked
// in an operation on the source (that operation fails with EBADF); the pointer is cleared
// only after FdSource::close() has waited for every operation inside to leave, and those
// read it once, when they began. Starting an operation concurrently with close() is the
// data race the owning classes document.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <utility>

namespace spindle::detail {

class FdSource;

class FdHandle {
 public:
  FdHandle() noexcept = default;
  /// Takes over `fd`, which must be non-blocking: wraps it in a new source. If that
  /// fails (std::bad_alloc) the fd is closed and the exception propagates.
  static FdHandle adopt(int fd);
  /// Takes over a source (null: a closed handle).
  explicit FdHandle(FdSource* s) noexcept : src_(s) {}
  FdHandle(FdHandle&& o) noexcept : src_(std::exchange(o.src_, nullptr)) {}
  /// Closes what this handle held, then takes o's source.
  FdHandle& operator=(FdHandle&& o) noexcept {
    if (this != &o) {
      close();
      src_ = std::exchange(o.src_, nullptr);
    }
    return *this;
  }
  FdHandle(const FdHandle&) = delete;
  FdHandle& operator=(const FdHandle&) = delete;
  ~FdHandle() { close(); }

  /// Runs the source's close sequence (FdSource::close: may suspend, not cancellably,
  /// until the operations inside have left) and forgets it. Returns false if it was
  /// already closed. Never throws.
  bool close() noexcept;
  bool is_open() const noexcept { return src_ != nullptr; }
  /// The fd, or -1 when closed.
  int fd() const noexcept;
  /// The source, for an operation called `what`. Throws std::system_error(EBADF, what)
  /// when closed.
  FdSource* get(const char* what) const;

 private:
  FdSource* src_ = nullptr;
};

}  // namespace spindle::detail
