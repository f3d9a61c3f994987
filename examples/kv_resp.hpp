// RESP2 request parsing for examples/kv_server.cpp: an incremental parser over the
// connection's read buffer. A request is either a multibulk array
// ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", what redis-cli and every client library send) or
// an inline command ("GET k\r\n", what a human types into nc).
//
// The parser keeps its place between calls (the bulk strings parsed so far are kept as
// offsets from the request's start), so a request that arrives in many reads is scanned
// once, not once per read, and the buffer may be compacted or grown between calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kv_example {

enum class Parse { complete, need_more, error };

class RequestParser {
 public:
  // max_bulk: the longest bulk string, and the most bytes a whole request may take.
  explicit RequestParser(std::size_t max_bulk) : max_bulk_(max_bulk) {}

  // Parses the request that starts at data[0] (data[0..n) is what has been received of
  // it and after it). complete: args() are its arguments and consumed() its length;
  // need_more: wait for more bytes (at least wanted() in all, when a bulk length is known);
  // error: error() says why (a protocol error: the connection should be closed).
  Parse parse(const char* data, std::size_t n) {
    if (n == 0) return Parse::need_more;
    if (nargs_ < 0 && data[0] != '*') return parse_inline(data, n);
    for (;;) {
      if (nargs_ < 0) {  // the "*N" line
        long long v;
        const Parse p = number_line(data, n, '*', v, "invalid multibulk length");
        if (p != Parse::complete) return p;
        if (v > kMaxArgs) return fail("Protocol error: invalid multibulk length");
        nargs_ = v < 0 ? 0 : v;
        args_.clear();
        if (nargs_ == 0) return done();  // Redis skips an empty array
      }
      if (bulk_len_ < 0) {  // the "$len" line
        if (pos_ >= n) return Parse::need_more;
        if (data[pos_] != '$') return fail(std::string("Protocol error: expected '$', got '") + data[pos_] + "'");
        long long v;
        const Parse p = number_line(data, n, '$', v, "invalid bulk length");
        if (p != Parse::complete) return p;
        if (v < 0 || std::size_t(v) > max_bulk_) return fail("Protocol error: invalid bulk length");
        bulk_len_ = v;
      }
      const std::size_t need = pos_ + std::size_t(bulk_len_) + 2;
      if (need > max_bulk_ + kSlack) return fail("Protocol error: request too large");
      if (n < need) {
        wanted_ = need;
        return Parse::need_more;
      }
      if (data[need - 2] != '\r' || data[need - 1] != '\n') return fail("Protocol error: bulk string without CRLF");
      args_.emplace_back(pos_, std::size_t(bulk_len_));
      pos_ = need;
      bulk_len_ = -1;
      if (std::ptrdiff_t(args_.size()) == nargs_) return done();
    }
  }

  // After complete: the arguments, as views into the data last passed to parse().
  std::size_t argc() const noexcept { return args_.size(); }
  std::string_view arg(const char* data, std::size_t i) const noexcept {
    return {data + args_[i].first, args_[i].second};
  }
  std::size_t consumed() const noexcept { return consumed_; }
  std::size_t wanted() const noexcept { return wanted_; }
  const std::string& error() const noexcept { return error_; }

  // Forgets the request just completed; the next parse() starts a new one.
  void reset() noexcept {
    nargs_ = -1;
    bulk_len_ = -1;
    pos_ = 0;
    scanned_ = 0;
    wanted_ = 0;
  }

 private:
  static constexpr long long kMaxArgs = 1024 * 1024;  // as Redis
  static constexpr std::size_t kMaxLine = 64 * 1024;  // an inline request, or a "*N" / "$N" line
  // Framing bytes ("$len\r\n", CRLFs) a request may carry beyond max_bulk_ in all.
  static constexpr std::size_t kSlack = 16 * 1024 * 1024;

  Parse done() {
    consumed_ = pos_;
    return Parse::complete;
  }
  Parse fail(std::string_view why) {
    error_ = std::string(why);
    return Parse::error;
  }

  // Parses "<c><integer>\r\n" at pos_. The "\r" is optional (nc sends bare "\n").
  Parse number_line(const char* data, std::size_t n, char c, long long& v, const char* what) {
    // Search from where the last call stopped: a line dripped a byte at a time is
    // scanned once.
    const std::size_t from = scanned_ > pos_ ? scanned_ : pos_;
    const void* nl = std::memchr(data + from, '\n', n - from);
    if (!nl) {
      if (n - pos_ > kMaxLine) return fail(std::string("Protocol error: ") + what);
      scanned_ = n;
      return Parse::need_more;
    }
    const std::size_t end = static_cast<const char*>(nl) - data;
    std::size_t stop = end;
    if (stop > pos_ && data[stop - 1] == '\r') --stop;
    std::size_t i = pos_ + 1;  // past the '*' or '$'
    (void)c;
    bool neg = false;
    if (i < stop && data[i] == '-') {
      neg = true;
      ++i;
    }
    if (i == stop || stop - i > 18) return fail(std::string("Protocol error: ") + what);
    long long r = 0;
    for (; i < stop; ++i) {
      if (data[i] < '0' || data[i] > '9') return fail(std::string("Protocol error: ") + what);
      r = r * 10 + (data[i] - '0');
    }
    v = neg ? -r : r;
    pos_ = end + 1;
    return Parse::complete;
  }

  // "SET k v\r\n": words separated by spaces or tabs (no quoting).
  Parse parse_inline(const char* data, std::size_t n) {
    const void* nl = std::memchr(data + scanned_, '\n', n - scanned_);
    if (!nl) {
      if (n > kMaxLine) return fail("Protocol error: too big inline request");
      scanned_ = n;
      return Parse::need_more;
    }
    const std::size_t end = static_cast<const char*>(nl) - data;
    args_.clear();
    std::size_t i = 0;
    while (i < end) {
      while (i < end && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r')) ++i;
      const std::size_t b = i;
      while (i < end && data[i] != ' ' && data[i] != '\t' && data[i] != '\r') ++i;
      if (i > b) args_.emplace_back(b, i - b);
    }
    pos_ = end + 1;
    return done();  // no words: an empty request, which the caller skips
  }

  const std::size_t max_bulk_;
  std::ptrdiff_t nargs_ = -1;  // -1: the "*N" line is not parsed yet
  long long bulk_len_ = -1;    // -1: the next "$len" line is not parsed yet
  std::size_t pos_ = 0;        // next byte to parse, from the request's start
  std::size_t scanned_ = 0;    // bytes searched for a newline without finding one
  std::size_t wanted_ = 0;
  std::size_t consumed_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> args_;  // (offset, length) of each
  std::string error_;
};

}  // namespace kv_example
