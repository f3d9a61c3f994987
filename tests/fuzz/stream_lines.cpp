// Fuzz target: SocketStream's buffered reads (read_until, read_line, read_exact, read)
// over a socket that delivers the input in pieces of random sizes.
//
// Input: the delimiter's length (1-4) and bytes, the limit, a seed, then the data. A
// writer thread sends the data over a socketpair one piece at a time, each only once
// the reader has taken the one before from the socket, so every recv sees exactly one
// piece (the piece sizes come from the seed, so a run is reproducible). This thread reads
// it through a SocketStream outside any runtime (its waits block in poll), mixing the
// read calls at random, and checks each result against the data itself:
//   read_until / read_line return the bytes up to and including the first delimiter when
//   it ends within the limit; else LimitOverrunError (consumed() > limit) and nothing is
//   consumed; at EOF IncompleteReadError with every byte left (read_line: returns them);
//   read_exact(n) returns n bytes, or IncompleteReadError with what was left;
//   read(n) returns a non-empty prefix of what is left, 0 only at EOF;
// and at the end the concatenation of everything returned is the input.
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spindle/io/errors.hpp>
#include <spindle/io/stream.hpp>

#include "fuzz_check.hpp"

namespace {

// Sends data in the given pieces, each after the reader has drained the one before, then
// shuts the socket down for writing (EOF). Blocking socket; its own thread.
void write_pieces(int fd, int peer_fd, std::string_view data, const std::vector<std::size_t>& pieces) {
  std::size_t at = 0;
  for (const std::size_t k : pieces) {
    int queued = 1;
    while (::ioctl(peer_fd, FIONREAD, &queued) == 0 && queued > 0) std::this_thread::yield();
    for (std::size_t sent = 0; sent < k;) {
      const ssize_t r = ::send(fd, data.data() + at + sent, k - sent, MSG_NOSIGNAL);
      if (r < 0) break;  // the reader is gone (it failed a check): stop
      sent += std::size_t(r);
    }
    at += k;
  }
  ::shutdown(fd, SHUT_WR);
}

enum class Op { read_until, read_line, read_exact, read_some };

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, std::size_t size) {
  fuzz::Params in(bytes, size);
  std::string delim;
  for (std::size_t k = 1 + in.byte() % 4; k > 0; --k) delim += char(in.byte());
  const std::size_t limit = 1 + std::size_t(in.byte()) * 2;
  fuzz::Rng rng(in.u16());
  const std::string_view data = in.rest();

  std::vector<std::size_t> pieces;
  for (std::size_t left = data.size(); left > 0;) {
    const std::size_t k = std::min(left, rng.next() % 8 == 0 ? rng.between(1, 2048) : rng.between(1, 16));
    pieces.push_back(k);
    left -= k;
  }

  int sv[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  std::thread writer(write_pieces, sv[1], sv[0], data, std::cref(pieces));
  std::string got;  // everything read, in order
  {
    spindle::SocketStream s(sv[0]);
    bool eof_seen = false;
    bool must_progress = false;  // after a LimitOverrunError: take bytes with read()
    for (std::size_t ops = 0; !eof_seen; ++ops) {
      FUZZ_CHECK(ops <= 4 * data.size() + 8);
      const std::string_view rest = data.substr(got.size());
      Op op = Op(rng.next() % 4);
      if (must_progress) op = Op::read_some;
      must_progress = false;
      const std::string_view d = op == Op::read_line ? std::string_view("\n") : std::string_view(delim);
      try {
        switch (op) {
          case Op::read_until:
          case Op::read_line: {
            const std::string r = op == Op::read_line ? s.read_line(limit) : s.read_until(d, limit);
            const std::size_t pos = rest.find(d);
            if (pos != std::string_view::npos && pos + d.size() <= limit) {
              FUZZ_CHECK(r == rest.substr(0, pos + d.size()));
            } else {
              // Only read_line returns (at EOF, with everything left, within the limit).
              FUZZ_CHECK(op == Op::read_line && pos == std::string_view::npos && rest.size() <= limit);
              FUZZ_CHECK(r == rest);
              eof_seen = true;
            }
            got += r;
            break;
          }
          case Op::read_exact: {
            const std::size_t n = rng.between(1, 64);
            const std::string r = s.read_exact(n);
            FUZZ_CHECK(rest.size() >= n && r == rest.substr(0, n));
            got += r;
            break;
          }
          case Op::read_some: {
            char buf[64];
            const std::size_t n = s.read(buf, rng.between(1, sizeof buf));
            FUZZ_CHECK(rest.substr(0, n) == std::string_view(buf, n));
            FUZZ_CHECK((n == 0) == rest.empty());
            eof_seen = n == 0;
            got.append(buf, n);
            break;
          }
        }
      } catch (const spindle::LimitOverrunError& e) {
        FUZZ_CHECK(op == Op::read_until || op == Op::read_line);
        const std::size_t pos = rest.find(d);
        FUZZ_CHECK(pos == std::string_view::npos ? rest.size() > limit : pos + d.size() > limit);
        FUZZ_CHECK(e.consumed() > limit);
        FUZZ_CHECK(s.buffered() > 0);
        must_progress = true;
      } catch (const spindle::IncompleteReadError& e) {
        FUZZ_CHECK(op == Op::read_until || op == Op::read_exact);
        FUZZ_CHECK(e.partial() == rest);
        if (op == Op::read_until) FUZZ_CHECK(rest.find(d) == std::string_view::npos && rest.size() <= limit);
        got += e.partial();
        eof_seen = true;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        FUZZ_CHECK(false);
      }
    }
    FUZZ_CHECK(got == data);
    FUZZ_CHECK(s.buffered() == 0);
    // The stream stays at EOF.
    FUZZ_CHECK(s.read_line(limit).empty());
  }  // closes sv[0]
  writer.join();
  ::close(sv[1]);
  return 0;
}
