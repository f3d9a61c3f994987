// RequestScanner: the HTTP example's incremental check of HTTP/1.1 request heads.
//
// It is fed the bytes of each read as they come (a request may be split anywhere, and
// many may arrive in one read). It counts the request heads that end, skips the
// Content-Length bodies that follow them, and stops at the first fault, which picks the
// response sent before the connection is closed:
//   400 Bad Request                      a request line or header field outside RFC
//                                        9112's syntax (lines end in CRLF; no obs-fold),
//                                        a bad or repeated Content-Length;
//   431 Request Header Fields Too Large  a head (request line and fields) longer than
//                                        max_head bytes;
//   501 Not Implemented                  Transfer-Encoding (chunked bodies are not served).
// Empty lines before a request line are skipped (RFC 9112 section 2.2) but count as head
// bytes, so a stream of them still meets the header limit and timeout.
//
// No allocation, no exception. One scanner per connection, used by one thread at a time.
// Header-only so that the fuzz target (tests/fuzz/) scans with exactly this code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace http_example {

namespace char_class {
constexpr uint8_t kTchar = 1, kVchar = 2, kFieldChar = 4;

constexpr uint8_t of(unsigned char c) noexcept {
  const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  bool tchar = alnum;
  for (const char* t = "!#$%&'*+-.^_`|~"; *t; ++t) tchar = tchar || c == static_cast<unsigned char>(*t);
  uint8_t k = tchar ? kTchar : 0;
  if (c >= 0x21 && c <= 0x7e) k |= kVchar;
  if (c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f)) k |= kFieldChar;  // SP, HTAB, VCHAR, obs-text
  return k;
}

struct Table {
  uint8_t c[256];
  constexpr Table() : c{} {
    for (int i = 0; i < 256; ++i) c[i] = of(static_cast<unsigned char>(i));
  }
};
inline constexpr Table kTable{};
}  // namespace char_class

enum class ScanError : uint8_t { none, bad_request, too_large, not_implemented };

class RequestScanner {
 public:
  explicit RequestScanner(std::size_t max_head = 64 * 1024) noexcept : max_head_(max_head) {}

  /// Scans the next n bytes of the connection and returns how many request heads ended
  /// in them. After a fault error() names it and the rest is ignored (later calls return 0).
  std::size_t feed(const char* p, std::size_t n) noexcept;

  ScanError error() const noexcept { return error_; }
  /// A request head has begun and not ended yet (the server's header timeout runs).
  bool in_head() const noexcept { return state_ != State::idle && state_ != State::body; }

 private:
  enum class State : uint8_t {
    idle,        // between requests
    lead_lf,     // CR of an empty line before the request line: expect LF
    lead,        // after such empty lines: as idle, but the head has begun
    method,      // token, then SP
    target_start,  // the target's first visible character
    target,      // visible characters, then SP
    version,     // "HTTP/d.d", then CR
    line_lf,     // expect the LF ending a request line or field line
    field_start, // a field name, or CR of the empty line ending the head
    name,        // token, then ':'
    value,       // field value, then CR
    cl_value,    // Content-Length value: OWS digits OWS, then CR
    end_lf,      // expect the LF ending the head
    body,        // body_left_ bytes to skip
  };
  static constexpr uint8_t kNoMatch = 0xff;
  static constexpr char kContentLength[] = "content-length";
  static constexpr char kTransferEncoding[] = "transfer-encoding";
  static constexpr uint64_t kMaxBody = 1'000'000'000'000'000;  // 10^15: no overflow below it


  static constexpr bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }
  static constexpr unsigned char lower(unsigned char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<unsigned char>(c + ('a' - 'A')) : c;
  }
  // Advances a case-insensitive match of `word` (of length len) by one name character.
  static constexpr uint8_t match(uint8_t pos, unsigned char c, const char* word, uint8_t len) noexcept {
    return pos < len && lower(c) == static_cast<unsigned char>(word[pos]) ? uint8_t(pos + 1) : kNoMatch;
  }

  bool fail(ScanError e) noexcept {
    error_ = e;
    return false;
  }
  // One byte of a head, in state st with head bytes before it; false on a fault. Adds 1
  // to done when the head ends.
  bool step(unsigned char c, State& st, std::size_t& head, std::size_t& done) noexcept;

  std::size_t max_head_;
  std::size_t head_len_ = 0;    // bytes of the current head so far
  uint64_t body_left_ = 0;      // Content-Length value being read, then the bytes to skip
  State state_ = State::idle;
  ScanError error_ = ScanError::none;
  uint8_t version_pos_ = 0;     // characters of "HTTP/d.d" matched
  uint8_t cl_pos_ = 0;          // of "content-length" matched by this field name (kNoMatch: none)
  uint8_t te_pos_ = 0;          // of "transfer-encoding" matched
  bool cl_seen_ = false;        // this head has a Content-Length field
  bool cl_digits_ = false;      // its value has a digit
  bool cl_tail_ = false;        // and whitespace after the digits
};

[[gnu::always_inline]] inline bool RequestScanner::step(unsigned char c, State& st, std::size_t& head,
                                                        std::size_t& done) noexcept {
  if (++head > max_head_) return fail(ScanError::too_large);
  const uint8_t k = char_class::kTable.c[c];
  switch (st) {
    case State::idle:
    case State::lead:
      if (c == '\r') {
        st = State::lead_lf;
        return true;
      }
      if (!(k & char_class::kTchar)) return fail(ScanError::bad_request);
      st = State::method;
      return true;
    case State::lead_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      st = State::lead;
      return true;
    case State::method:
      if (c == ' ') {
        st = State::target_start;
        return true;
      }
      return (k & char_class::kTchar) ? true : fail(ScanError::bad_request);
    case State::target_start:
      if (!(k & char_class::kVchar)) return fail(ScanError::bad_request);
      st = State::target;
      return true;
    case State::target:
      if (c == ' ') {
        st = State::version;
        version_pos_ = 0;
        return true;
      }
      return (k & char_class::kVchar) ? true : fail(ScanError::bad_request);
    case State::version: {
      if (version_pos_ == 8) {
        if (c != '\r') return fail(ScanError::bad_request);
        st = State::line_lf;
        return true;
      }
      const char want = "HTTP/#.#"[version_pos_];
      const bool ok = want == '#' ? (c >= '0' && c <= '9') : c == static_cast<unsigned char>(want);
      if (!ok) return fail(ScanError::bad_request);
      ++version_pos_;
      return true;
    }
    case State::line_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      st = State::field_start;
      return true;
    case State::field_start:
      if (c == '\r') {
        st = State::end_lf;
        return true;
      }
      if (!(k & char_class::kTchar)) return fail(ScanError::bad_request);  // also obs-fold (leading SP/HTAB)
      st = State::name;
      cl_pos_ = match(0, c, kContentLength, sizeof kContentLength - 1);
      te_pos_ = match(0, c, kTransferEncoding, sizeof kTransferEncoding - 1);
      return true;
    case State::name:
      if (c == ':') {
        if (te_pos_ == sizeof kTransferEncoding - 1) return fail(ScanError::not_implemented);
        if (cl_pos_ == sizeof kContentLength - 1) {
          if (cl_seen_) return fail(ScanError::bad_request);
          cl_seen_ = true;
          cl_digits_ = cl_tail_ = false;
          body_left_ = 0;
          st = State::cl_value;
        } else {
          st = State::value;
        }
        return true;
      }
      if (!(k & char_class::kTchar)) return fail(ScanError::bad_request);
      cl_pos_ = match(cl_pos_, c, kContentLength, sizeof kContentLength - 1);
      te_pos_ = match(te_pos_, c, kTransferEncoding, sizeof kTransferEncoding - 1);
      return true;
    case State::value:
      if (c == '\r') {
        st = State::line_lf;
        return true;
      }
      return (k & char_class::kFieldChar) ? true : fail(ScanError::bad_request);
    case State::cl_value:
      if (c >= '0' && c <= '9') {
        if (cl_tail_) return fail(ScanError::bad_request);
        body_left_ = body_left_ * 10 + uint64_t(c - '0');
        if (body_left_ >= kMaxBody) return fail(ScanError::bad_request);
        cl_digits_ = true;
        return true;
      }
      if (c == ' ' || c == '\t') {
        cl_tail_ = cl_digits_;
        return true;
      }
      if (c == '\r' && cl_digits_) {
        st = State::line_lf;
        return true;
      }
      return fail(ScanError::bad_request);
    case State::end_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      ++done;
      head = 0;
      cl_seen_ = false;
      st = body_left_ > 0 ? State::body : State::idle;
      return true;
    case State::body:
      break;  // feed() skips bodies
  }
  return fail(ScanError::bad_request);
}

inline std::size_t RequestScanner::feed(const char* p, std::size_t n) noexcept {
  std::size_t done = 0;
  if (error_ != ScanError::none) return 0;
  // The state lives in locals while scanning (registers, not memory the compiler must
  // assume the input may alias), and runs of bytes that only continue a method, target
  // or field value take a tight loop; the bytes that end or start a token go through
  // step() one at a time.
  const auto* s = reinterpret_cast<const unsigned char*>(p);
  const auto* const end = s + n;
  State st = state_;
  std::size_t head = head_len_;
  while (s < end) {
    uint8_t run = 0;
    switch (st) {
      case State::body: {
        const std::size_t avail = std::size_t(end - s);
        const std::size_t k = body_left_ < avail ? std::size_t(body_left_) : avail;
        s += k;
        body_left_ -= k;
        if (body_left_ == 0) st = State::idle;
        continue;
      }
      case State::method:
        run = char_class::kTchar;
        break;
      case State::target:
        run = char_class::kVchar;
        break;
      case State::value:
        run = char_class::kFieldChar;
        break;
      case State::name:  // once the name can no longer be either word that matters
        if (cl_pos_ == kNoMatch && te_pos_ == kNoMatch) run = char_class::kTchar;
        break;
      case State::version:  // the whole "HTTP/d.d" CR at once when it is there
        if (version_pos_ == 0 && end - s >= 9 && std::memcmp(s, "HTTP/", 5) == 0 && is_digit(s[5]) && s[6] == '.' &&
            is_digit(s[7]) && s[8] == '\r') {
          head += 9;
          if (head > max_head_) {
            fail(ScanError::too_large);
            s = end;
            break;
          }
          s += 9;
          st = State::line_lf;
          continue;
        }
        break;
      default:
        break;
    }
    if (error_ != ScanError::none) break;
    if (run) {
      const unsigned char* q = s;
      while (q < end && (char_class::kTable.c[*q] & run)) ++q;
      head += std::size_t(q - s);
      if (head > max_head_) {
        fail(ScanError::too_large);
        break;
      }
      s = q;
      if (s == end) break;
    }
    if (!step(*s++, st, head, done)) break;
  }
  state_ = st;
  head_len_ = head;
  return done;
}

}  // namespace http_example
