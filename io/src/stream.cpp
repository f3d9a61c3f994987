// SocketStream: buffered reads, writes, half-close and close over an FdSource.
#include <spindle/io/stream.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>

#include <spindle/errors.hpp>

#include "syscall.hpp"

namespace spindle {

namespace detail {
void set_nonblocking(int fd) {
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) throw_errno(errno, "fcntl(O_NONBLOCK)");
  const int fd_fl = ::fcntl(fd, F_GETFD);
  if (fd_fl < 0 || ::fcntl(fd, F_SETFD, fd_fl | FD_CLOEXEC) < 0) throw_errno(errno, "fcntl(FD_CLOEXEC)");
}
}  // namespace detail

namespace {
constexpr std::size_t kChunk = 16 * 1024;  // what one fill() asks the kernel for
constexpr auto never_transient = [](int) { return false; };
}  // namespace

// Every operation that may wait holds an FdSource::Op from before its first syscall
// until it has finished with this object (buffer bookkeeping included), and reads src_
// only once, at its start: close() waits for that count to drain, so when close()
// returns no woken operation touches the stream any more, and it may be destroyed.

SocketStream::SocketStream(int fd) {
  if (fd < 0) throw std::invalid_argument("SocketStream: negative fd");
  detail::set_nonblocking(fd);
  src_ = detail::FdHandle::adopt(fd);
}

SocketStream::SocketStream(SocketStream&& o) noexcept
    : src_(std::move(o.src_)),
      pipe_(o.pipe_),
      rbuf_(std::move(o.rbuf_)),
      rbeg_(std::exchange(o.rbeg_, 0)),
      rend_(std::exchange(o.rend_, 0)),
      timeout_(o.timeout_) {}

SocketStream& SocketStream::operator=(SocketStream&& o) noexcept {
  if (this != &o) {
    close();
    src_ = std::move(o.src_);
    rbuf_ = std::move(o.rbuf_);
    rbeg_ = std::exchange(o.rbeg_, 0);
    rend_ = std::exchange(o.rend_, 0);
    timeout_ = o.timeout_;
    pipe_ = o.pipe_;
  }
  return *this;
}

SocketStream::~SocketStream() { close(); }

void SocketStream::close() noexcept {
  // FdHandle::close waits for the operations inside before it forgets the source.
  (void)src_.close();
  rbeg_ = rend_ = 0;
}

// Each public read or write makes one CallDeadline from the stream's timeout: every
// syscall and wait of that call shares it (set_timeout bounds the call), and it reads
// the clock only if the call waits.
std::size_t SocketStream::recv_some(detail::FdSource* s, void* buf, std::size_t n, detail::CallDeadline& dl,
                                    const char* what) {
  // After a short read the next one waits for an edge first (FdSource::read_drained).
  const auto got = std::size_t(detail::io_call_held(
      s, detail::Dir::read, dl, what, std::source_location::current(),
      [&](int fd) { return pipe_ ? ::read(fd, buf, n) : detail::sys_recv(fd, buf, n, 0); }, never_transient,
      s->read_drained()));
  s->note_read(got, n);
  return got;
}

void SocketStream::consume(std::size_t n) noexcept {
  rbeg_ += n;
  if (rbeg_ == rend_) rbeg_ = rend_ = 0;
}

std::size_t SocketStream::fill(detail::FdSource* s, std::size_t want, detail::CallDeadline& dl, const char* what) {
  if (rbeg_ > 0 && rbuf_.size() - rend_ < want) {  // compact first
    std::memmove(rbuf_.data(), rbuf_.data() + rbeg_, rend_ - rbeg_);
    rend_ -= rbeg_;
    rbeg_ = 0;
  }
  if (rbuf_.size() - rend_ < want) rbuf_.resize(rend_ + want);
  const std::size_t n = recv_some(s, rbuf_.data() + rend_, rbuf_.size() - rend_, dl, what);
  rend_ += n;
  return n;
}

void SocketStream::unread(const char* p, std::size_t n) {
  if (n == 0) return;
  std::string rest(rbuf_.data() + rbeg_, rend_ - rbeg_);
  rbuf_.assign(p, n);
  rbuf_ += rest;
  rbeg_ = 0;
  rend_ = rbuf_.size();
}

std::size_t SocketStream::read(void* buf, std::size_t n) {
  if (n == 0) throw std::invalid_argument("SocketStream::read: buffer of size 0");
  if (rend_ > rbeg_) {
    const std::size_t k = std::min(n, rend_ - rbeg_);
    std::memcpy(buf, rbuf_.data() + rbeg_, k);
    consume(k);
    return k;
  }
  detail::FdSource* s = src_.get("recv");
  detail::CallDeadline dl(timeout_);
  const detail::FdSource::Op op(s, "recv");
  return recv_some(s, buf, n, dl, "recv");
}

std::string SocketStream::read(std::size_t max) {
  std::string s(max, '\0');
  s.resize(read(s.data(), max));
  return s;
}

void SocketStream::read_exact(void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  std::size_t got = 0;
  if (rend_ > rbeg_) {
    got = std::min(n, rend_ - rbeg_);
    std::memcpy(p, rbuf_.data() + rbeg_, got);
    consume(got);
  }
  if (got == n) return;
  detail::CallDeadline dl(timeout_);
  // Outlives the handler below: unread() runs while close() still waits for us.
  std::optional<detail::FdSource::Op> op;
  try {
    detail::FdSource* s = src_.get("recv");
    op.emplace(s, "recv");
    while (got < n) {
      const std::size_t k = recv_some(s, p + got, n - got, dl, "recv");
      if (k == 0) throw IncompleteReadError(std::string(p, got), n);
      got += k;
    }
  } catch (const IncompleteReadError&) {
    throw;
  } catch (...) {
    // Cancelled, timed out or failed: nothing gathered is lost. Not counted in op means
    // the stream is closed, its buffer discarded: nothing to keep.
    if (op) unread(p, got);
    throw;
  }
}

std::string SocketStream::read_exact(std::size_t n) {
  std::string s(n, '\0');
  read_exact(s.data(), n);
  return s;
}

std::string SocketStream::read_until(std::string_view delim, std::size_t limit) {
  if (delim.empty()) throw std::invalid_argument("SocketStream::read_until: empty delimiter");
  detail::CallDeadline dl(timeout_);
  detail::FdSource* s = nullptr;
  std::optional<detail::FdSource::Op> op;  // from the first fill() on: a buffered line needs none
  std::size_t scanned = 0;                 // bytes of the buffer known not to start a match
  for (;;) {
    const std::string_view have(rbuf_.data() + rbeg_, rend_ - rbeg_);
    const std::size_t pos = have.find(delim, scanned);
    if (pos != std::string_view::npos) {
      const std::size_t len = pos + delim.size();
      if (len > limit)
        throw LimitOverrunError("read_until: delimiter found beyond the limit of " + std::to_string(limit), len);
      std::string out(have.substr(0, len));
      consume(len);
      return out;
    }
    if (have.size() > limit)
      throw LimitOverrunError("read_until: no delimiter within the limit of " + std::to_string(limit), have.size());
    scanned = have.size() >= delim.size() ? have.size() - delim.size() + 1 : 0;
    if (s == nullptr) {
      s = src_.get("recv");
      op.emplace(s, "recv");
    }
    // A timeout, cancellation or error leaves what was gathered buffered for the next read.
    if (fill(s, kChunk, dl, "recv") == 0) {
      std::string partial(rbuf_.data() + rbeg_, rend_ - rbeg_);
      consume(partial.size());
      throw IncompleteReadError(std::move(partial), 0);
    }
  }
}

std::string SocketStream::read_line(std::size_t limit) {
  try {
    return read_until("\n", limit);
  } catch (IncompleteReadError& e) {
    return e.partial();
  }
}

std::size_t SocketStream::write_some(const void* buf, std::size_t n) {
  return std::size_t(detail::io_call(src_.get("send"), detail::Dir::write, detail::CallDeadline(timeout_), "send",
                                     std::source_location::current(), [&](int fd) {
                                       return pipe_ ? detail::write_nosigpipe(fd, buf, n)
                                                    : detail::sys_send(fd, buf, n, MSG_NOSIGNAL);
                                     }));
}

void SocketStream::write_all(const void* buf, std::size_t n) {
  const auto* p = static_cast<const char*>(buf);
  detail::FdSource* s = src_.get("send");
  detail::CallDeadline dl(timeout_);
  const detail::FdSource::Op op(s, "send");  // one for the whole loop: s stays valid between sends
  while (n > 0) {
    const auto k = std::size_t(detail::io_call_held(
        s, detail::Dir::write, dl, "send", std::source_location::current(),
        [&](int fd) { return pipe_ ? detail::write_nosigpipe(fd, p, n) : detail::sys_send(fd, p, n, MSG_NOSIGNAL); },
        never_transient));
    p += k;
    n -= k;
  }
}

void SocketStream::shutdown_write() {
  if (pipe_) {  // a pipe has no half-close: closing the write end is the EOF
    close();
    return;
  }
  if (::shutdown(src_.get("shutdown")->fd(), SHUT_WR) != 0) detail::throw_errno(errno, "shutdown");
}

}  // namespace spindle
