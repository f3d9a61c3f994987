// Unix domain stream sockets: UnixListener and UnixStream (asyncio start_unix_server /
// open_unix_connection). Paths starting with '@' are in Linux's abstract namespace.
// Thread rules, cancellation and errors are those of SocketStream and TcpListener.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>

#include <spindle/io/address.hpp>
#include <spindle/io/stream.hpp>

namespace spindle {

class UnixStream : public SocketStream {
 public:
  UnixStream() noexcept = default;
  /// Adopts a connected AF_UNIX stream socket. Throws std::system_error.
  explicit UnixStream(int fd) : SocketStream(fd) {}
  /// Connects to the socket at path. Throws std::system_error (ENOENT, ECONNREFUSED...),
  /// TimeoutError after timeout (none by default; zero or negative: connects only if
  /// the listener's queue has room now), std::invalid_argument for a bad path,
  /// CancelledError. Any fibre or thread.
  static UnixStream connect(std::string_view path, TimeLimit timeout = {});
  /// Two connected streams (socketpair). Throws std::system_error.
  static std::pair<UnixStream, UnixStream> pair();
  SocketAddress local_address() const;
  SocketAddress peer_address() const;

 private:
  friend class UnixListener;
};

class UnixListener {
 public:
  UnixListener() noexcept = default;
  /// Binds path and listens. A stale socket file at path is removed first (only if it
  /// is a socket). close() removes the file bind made, and only that one: if the path
  /// now names another file (another listener replaced it), it is left alone. Throws
  /// std::system_error, std::invalid_argument for a bad path (a NUL byte in it
  /// included).
  explicit UnixListener(std::string_view path, int backlog = 1024);
  UnixListener(UnixListener&& o) noexcept = default;
  /// Closes this listener first (see close()), then takes o's socket and path.
  UnixListener& operator=(UnixListener&& o) noexcept;
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;
  ~UnixListener();

  /// Waits for a connection. Throws as TcpListener::accept.
  UnixStream accept(TimeLimit timeout = {});
  /// Stops listening and removes the socket file if the path still names the file this
  /// listener's bind made (same device and inode). Idempotent, never throws.
  void close() noexcept;
  bool is_open() const noexcept { return src_.is_open(); }
  const std::string& path() const noexcept { return path_; }

 private:
  static void unlink_if_mine(const std::string& path, dev_t dev, ino_t ino) noexcept;
  detail::FdHandle src_;
  std::string path_;
  dev_t dev_ = 0;  // the socket file bind made (ino_ 0: none, or abstract)
  ino_t ino_ = 0;
};

}  // namespace spindle
