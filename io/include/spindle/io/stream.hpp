// SocketStream: a connected, non-blocking stream socket read and written by fibres
// (asyncio's StreamReader and StreamWriter in one object). TcpStream and UnixStream
// derive from it.
//
// Thread rules: a stream may be used from any fibre on any worker, and from threads
// outside the runtime (which then block). At most one fibre may read and one may write
// at a time (full duplex is fine); a second concurrent reader gets RuntimeError.
// close() may be called while another fibre (or thread) is blocked in an operation on
// the stream: that operation fails with std::system_error(EBADF), and it has finished
// with the object when close() returns, so the stream may be destroyed at once.
// Starting an operation concurrently with close() (or with destroying the object) is a
// data race.
//
// Runtimes: a stream belongs to none. The first operation that has to wait registers
// the fd with the loop it runs on; once that loop's runtime has shut down, the next
// operation that waits registers it with its own loop, so a stream made in one runtime
// works in a later one. (While the first runtime still runs, its loop keeps serving the
// fd.) From a thread outside any runtime, waits block in poll(2).
//
// Timeouts: set_timeout(d) bounds each read or write call as a whole: read_exact,
// read_until, read_line and write_all throw TimeoutError once d has passed since the
// call began, however the peer trickles bytes meanwhile. d is a TimeLimit
// (time_limit.hpp), read the same way as every spindle timeout: std::nullopt (the
// default) is none; zero or negative has passed already, so a call completes only with
// what it can do without waiting (bytes already received, room already free in the
// socket's buffer) and otherwise throws TimeoutError.
//
// Cancellation: a fibre cancelled in a read gets CancelledError and no byte is lost —
// what read_exact / read_until had gathered stays buffered for the next read. A
// fibre cancelled in write_all gets CancelledError with an unknown prefix sent; the
// stream should then be closed.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include <spindle/io/errors.hpp>
#include <spindle/io/fd_handle.hpp>
#include <spindle/time_limit.hpp>

namespace spindle {
namespace detail {
class CallDeadline;  // io/src/io_source.hpp
}

class SocketStream {
 public:
  SocketStream() noexcept = default;
  /// Adopts a connected socket (made non-blocking here). Throws std::system_error.
  explicit SocketStream(int fd);
  SocketStream(SocketStream&& o) noexcept;
  SocketStream& operator=(SocketStream&& o) noexcept;
  SocketStream(const SocketStream&) = delete;
  SocketStream& operator=(const SocketStream&) = delete;
  /// Closes the stream (see close()).
  ~SocketStream();

  /// Reads up to n bytes into buf: what is buffered, else waits for data. Returns 0 at
  /// EOF. Throws std::invalid_argument if n == 0, std::system_error (ECONNRESET on a
  /// peer reset, EBADF when closed), CancelledError.
  std::size_t read(void* buf, std::size_t n);
  /// Reads up to max bytes (asyncio read(n)); "" means EOF.
  std::string read(std::size_t max);
  /// Reads exactly n bytes. Throws IncompleteReadError (with the bytes read) at EOF, and
  /// the errors of read().
  void read_exact(void* buf, std::size_t n);
  std::string read_exact(std::size_t n);
  /// Reads up to and including `delim` (asyncio readuntil). Throws LimitOverrunError if
  /// more than `limit` bytes arrive without it (the data stays buffered),
  /// IncompleteReadError at EOF, std::invalid_argument for an empty delimiter.
  std::string read_until(std::string_view delim, std::size_t limit = 64 * 1024);
  /// Reads a line, "\n" included (asyncio readline): at EOF returns what is left (""
  /// when nothing). Throws LimitOverrunError like read_until.
  std::string read_line(std::size_t limit = 64 * 1024);

  /// Writes all n bytes, waiting while the socket buffer is full. Throws std::system_error
  /// (EPIPE / ECONNRESET when the peer is gone; never SIGPIPE), CancelledError.
  void write_all(const void* buf, std::size_t n);
  void write_all(std::string_view s) { write_all(s.data(), s.size()); }
  /// Writes what fits without waiting, waiting only if nothing fits; returns the count.
  std::size_t write_some(const void* buf, std::size_t n);

  /// Sends EOF to the peer (shutdown(SHUT_WR)); reading goes on. Throws std::system_error.
  void shutdown_write();
  /// Closes the socket: operations blocked on it fail with EBADF. Idempotent; never
  /// throws; may suspend briefly (not cancellably) until those operations have left:
  /// when it returns none of them touches this object any more. Buffered bytes are
  /// dropped. Any fibre or thread.
  void close() noexcept;
  bool is_open() const noexcept { return src_.is_open(); }
  /// The socket's fd (-1 when closed), for setsockopt and the like. Still owned here.
  int native_handle() const noexcept { return src_.fd(); }
  /// Bytes received and buffered, not yet read.
  std::size_t buffered() const noexcept { return rend_ - rbeg_; }

  /// Time limit for each later read and write call as a whole (std::nullopt: none, the
  /// default): a call still waiting t after it first had to wait throws TimeoutError,
  /// however many bytes arrived meanwhile (read_line against a peer that drips a byte at
  /// a time included). Zero or negative: each call does what it can without waiting,
  /// then throws TimeoutError. A read that times out loses nothing: what it had received
  /// stays buffered for the next read. After write_all times out an unknown prefix was
  /// sent.
  void set_timeout(TimeLimit t) noexcept { timeout_ = t; }
  /// The limit set_timeout set.
  TimeLimit timeout() const noexcept { return timeout_; }

 protected:
  detail::FdHandle src_;
  /// Set by PipeStream (process.hpp): the fd is one end of a pipe, read with read(2) and
  /// written with write(2) (SIGPIPE held back: a gone reader is EPIPE); shutdown_write()
  /// closes it.
  bool pipe_ = false;

 private:
  // Both run inside an operation that holds an FdSource::Op on s (stream.cpp).
  std::size_t recv_some(detail::FdSource* s, void* buf, std::size_t n, detail::CallDeadline& dl, const char* what);
  // Appends to the buffer; 0 = EOF.
  std::size_t fill(detail::FdSource* s, std::size_t want, detail::CallDeadline& dl, const char* what);
  void unread(const char* p, std::size_t n);
  void consume(std::size_t n) noexcept;
  // Read buffer: bytes [rbeg_, rend_) of rbuf_ are received and not yet read.
  std::string rbuf_;
  std::size_t rbeg_ = 0, rend_ = 0;
  TimeLimit timeout_{};
};

}  // namespace spindle
