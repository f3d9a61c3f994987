// RequestScanner: the HTTP example's incremental reader of HTTP/1.x requests (RFC 9112).
//
// It is fed the bytes of each read as they come (a request may be split anywhere, and
// many may arrive in one read). feed() stops after each event, so that the server can
// answer requests in order:
//   Event::request    a whole request (head and body) has been read; request() says what
//                     the response needs (HEAD, the version, whether to keep the connection);
//   Event::expect     a head with "Expect: 100-continue" and a body has ended (HTTP/1.1
//                     only): the server sends "100 Continue", then the body is read.
// Bodies are skipped: Content-Length ones, and chunked ones (chunk extensions and
// trailer fields are checked and dropped). The first fault stops the scanner, and picks
// the response sent before the connection is closed:
//   400 Bad Request                      a request line or field outside RFC 9112's syntax
//                                        (lines end in CRLF; no obs-fold), a bad or repeated
//                                        Content-Length, both Content-Length and
//                                        Transfer-Encoding, a Transfer-Encoding whose last
//                                        coding is not chunked or on an HTTP/1.0 request, an
//                                        HTTP/1.1 request without Host or any with two, a bad
//                                        Host value, a malformed chunk;
//   414 URI Too Long                     a request-target longer than max_target bytes;
//   431 Request Header Fields Too Large  a head (request line and fields) longer than
//                                        max_head bytes, or a chunk line or trailer section;
//   501 Not Implemented                  a transfer coding other than chunked before it;
//   505 HTTP Version Not Supported       a version other than HTTP/1.0 and HTTP/1.1 (decided
//                                        at the CR ending the request line).
// Semantic checks on fields (Host, framing) are made at the head's last LF. Empty lines
// before a request line are skipped (RFC 9112 section 2.2) but count as head bytes, so a
// stream of them still meets the header limit and timeout.
//
// No allocation, no exception. One scanner per connection, used by one thread at a time.
// Header-only so that the fuzz target (tests/fuzz/) scans with exactly this code.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace http_example {

namespace char_class {
constexpr uint8_t kTchar = 1, kVchar = 2, kFieldChar = 4, kHostChar = 8, kHex = 16, kListChar = 32;

constexpr uint8_t of(unsigned char c) noexcept {
  const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  bool tchar = alnum;
  for (const char* t = "!#$%&'*+-.^_`|~"; *t; ++t) tchar = tchar || c == static_cast<unsigned char>(*t);
  // Host: uri-host [":" port], with uri-host an IP-literal, IPv4 or reg-name: unreserved,
  // sub-delims, pct-encoded, ':' and the brackets.
  bool host = alnum;
  for (const char* t = "-._~!$&'()*+,;=%:[]"; *t; ++t) host = host || c == static_cast<unsigned char>(*t);
  uint8_t k = tchar ? kTchar : 0;
  if (c >= 0x21 && c <= 0x7e) k |= kVchar;
  if (c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f)) k |= kFieldChar;  // SP, HTAB, VCHAR, obs-text
  if (host) k |= kHostChar;
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) k |= kHex;
  if (c >= 0x21 && c != 0x7f && c != ',') k |= kListChar;  // a list token's: no OWS, comma or CR
  return k;
}

struct Table {
  uint8_t c[256];
  constexpr Table() : c{} {
    for (int i = 0; i < 256; ++i) c[i] = of(static_cast<unsigned char>(i));
  }
};
inline constexpr Table kTable{};

// The first byte in [s, e) without the class bit `bit` (one bit), or e.
inline const unsigned char* run(const unsigned char* s, const unsigned char* e, uint8_t bit) noexcept {
  if (e - s >= 4) {
    const unsigned char* const last = e - 4;  // four at a time up to it
    while (s <= last && (kTable.c[s[0]] & kTable.c[s[1]] & kTable.c[s[2]] & kTable.c[s[3]] & bit)) s += 4;
  }
  while (s < e && (kTable.c[*s] & bit)) ++s;
  return s;
}

// Eight bytes at a time (a little-endian word, byte i in bits 8i..8i+7): masks with the
// top bit of each byte that is outside a set. A borrow can only leave a flagged byte, so
// the lowest flag is always exact (the ones above it need not be): the first byte
// outside the set is the lowest flag.
namespace word {
constexpr uint64_t kOnes = 0x0101010101010101u, kTops = 0x8080808080808080u;
constexpr bool kUsable = std::endian::native == std::endian::little;
inline uint64_t load(const unsigned char* s) noexcept {
  uint64_t x;
  std::memcpy(&x, s, 8);
  return x;
}
// Bytes below n (n <= 0x80), above n (n < 0x80), zero.
constexpr uint64_t below(uint64_t x, uint8_t n) noexcept { return (x - kOnes * n) & ~x & kTops; }
constexpr uint64_t above(uint64_t x, uint8_t n) noexcept { return ((x + kOnes * (127 - n)) | x) & kTops; }
constexpr uint64_t zero(uint64_t x) noexcept { return below(x, 1); }
// The bytes that are no VCHAR; that are no field character, or HTAB.
constexpr uint64_t not_vchar(uint64_t x) noexcept { return below(x, 0x21) | above(x, 0x7e); }
constexpr uint64_t not_field_char_or_tab(uint64_t x) noexcept { return below(x, 0x20) | zero(x ^ (kOnes * 0x7f)); }
inline std::size_t first(uint64_t m) noexcept { return std::size_t(std::countr_zero(m)) / 8; }
}  // namespace word

// As run(s, e, bit), a word at a time: outside(x) flags (see word) the bytes of x that
// may be outside the class; the table decides those.
template <uint64_t (*outside)(uint64_t)>
inline const unsigned char* word_run(const unsigned char* s, const unsigned char* e, uint8_t bit) noexcept {
  if constexpr (word::kUsable) {
    while (e - s >= 8) {
      if (const uint64_t m = outside(word::load(s))) {
        s += word::first(m);
        if (!(kTable.c[*s] & bit)) return s;
        ++s;
      } else {
        s += 8;
      }
    }
  }
  return run(s, e, bit);
}
// A target's characters; a field value's.
inline const unsigned char* vchar_run(const unsigned char* s, const unsigned char* e) noexcept {
  return word_run<word::not_vchar>(s, e, kVchar);
}
inline const unsigned char* field_run(const unsigned char* s, const unsigned char* e) noexcept {
  return word_run<word::not_field_char_or_tab>(s, e, kFieldChar);
}
}  // namespace char_class

enum class ScanError : uint8_t { none, bad_request, uri_too_long, too_large, not_implemented, bad_version };
enum class Event : uint8_t { none, request, expect };

/// What the response to the last request (or expect event) needs.
struct RequestInfo {
  bool head = false;       // method HEAD: no body in the response
  bool http10 = false;     // HTTP/1.0 (else HTTP/1.1)
  bool keep_alive = true;  // the connection persists after the response (RFC 9112 9.3)
};

class RequestScanner {
 public:
  explicit RequestScanner(std::size_t max_head = 64 * 1024, std::size_t max_target = 8 * 1024) noexcept
      : max_head_(max_head), max_target_(max_target) {}

  /// Scans up to n bytes of the connection and returns how many it used: all n, or fewer
  /// when an event (event()) or a fault (error()) stopped it. After a fault the rest is
  /// ignored (later calls return 0).
  std::size_t feed(const char* p, std::size_t n) noexcept;

  /// The event that ended the last feed(), or Event::none.
  Event event() const noexcept { return event_; }
  const RequestInfo& request() const noexcept { return info_; }
  ScanError error() const noexcept { return error_; }
  /// A request head has begun and not ended yet (the server's header timeout runs).
  bool in_head() const noexcept { return state_ != State::idle && state_ < State::body; }

 private:
  enum class State : uint8_t {
    idle,          // between requests
    lead_lf,       // CR of an empty line before the request line: expect LF
    lead,          // after such empty lines: as idle, but the head has begun
    method,        // token, then SP
    target_start,  // the target's first visible character
    target,        // visible characters, then SP
    version,       // "HTTP/d.d", then CR
    line_lf,       // expect the LF ending a request line or field line
    field_start,   // a field name, or CR of the empty line ending the head
    name,          // token, then ':'
    value,         // field value, then CR
    cl_value,      // Content-Length value: OWS digits OWS, then CR
    list_value,    // a value read as a list of tokens (Connection, Transfer-Encoding, Expect, Host)
    end_lf,        // expect the LF ending the head
    // Body states (not in_head()) from here on.
    body,           // body_left_ bytes to skip
    chunk_size,     // hex digits of a chunk size
    chunk_ext,      // after the size: ";" extension (skipped) or CR
    chunk_lf,       // the LF ending a chunk-size line
    chunk_data,     // body_left_ bytes of chunk data
    chunk_cr,       // CR after the chunk data
    chunk_data_lf,  // LF after the chunk data
    trailer_start,  // a trailer field, or CR of the empty line ending the body
    trailer,        // a trailer field line, then CR
    trailer_lf,     // the LF ending a trailer field line
    body_end_lf,    // the LF ending the chunked body
  };
  // Fields whose values matter; the name matcher narrows to one by its characters.
  enum Field : uint8_t {
    f_content_length,
    f_transfer_encoding,
    f_connection,
    f_expect,
    f_host,
    f_count,
    f_none = 0xff
  };
  static constexpr const char* kFieldName[f_count] = {"content-length", "transfer-encoding", "connection", "expect",
                                                      "host"};
  static constexpr uint8_t kFieldLen[f_count] = {14, 17, 10, 6, 4};
  // The field a name of each length may be (their lengths differ).
  static constexpr std::size_t kMaxFieldLen = 17;
  static constexpr uint8_t kFieldOfLength[kMaxFieldLen + 1] = {
      f_none, f_none,       f_none, f_none, f_host, f_none,           f_expect, f_none, f_none,
      f_none, f_connection, f_none, f_none, f_none, f_content_length, f_none,   f_none, f_transfer_encoding};
  static constexpr bool lengths_match() noexcept {
    for (uint8_t f = 0; f < f_count; ++f)
      if (kFieldLen[f] > kMaxFieldLen || kFieldOfLength[kFieldLen[f]] != f) return false;
    return true;
  }
  // Tokens of list values that matter.
  enum Word : uint8_t { w_close, w_keep_alive, w_chunked, w_continue, w_count, w_none = 0xff };
  static constexpr const char* kWord[w_count] = {"close", "keep-alive", "chunked", "100-continue"};
  static constexpr uint8_t kWordLen[w_count] = {5, 10, 7, 12};
  static constexpr uint64_t kMaxBody = 1'000'000'000'000'000;  // 10^15: no overflow below it
  static constexpr uint8_t kMaxChunkDigits = 15;               // 16^15 > any body we would skip

  static constexpr bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }
  // Whether the len (4 or more) token characters from s are name, a lower-case field
  // name (letters and '-'), in any case: | 0x20 lowers a letter, and gives a letter or '-'
  // from no other token character. A word at a time.
  static bool same_lower(const unsigned char* s, const char* name, std::size_t len) noexcept {
    if (len < 8) {
      uint32_t a, b, c, d;
      std::memcpy(&a, s, 4);
      std::memcpy(&b, name, 4);
      std::memcpy(&c, s + len - 4, 4);
      std::memcpy(&d, name + len - 4, 4);
      return ((a | 0x20202020u) == b) & ((c | 0x20202020u) == d);
    }
    uint64_t a, b;
    bool same = true;
    for (std::size_t i = 0; i + 8 <= len; i += 8) {
      std::memcpy(&a, s + i, 8);
      std::memcpy(&b, name + i, 8);
      same = same && (a | 0x2020202020202020u) == b;
    }
    std::memcpy(&a, s + len - 8, 8);
    std::memcpy(&b, name + len - 8, 8);
    return same && (a | 0x2020202020202020u) == b;
  }
  static constexpr unsigned char lower(unsigned char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<unsigned char>(c + ('a' - 'A')) : c;
  }
  static constexpr unsigned hex_value(unsigned char c) noexcept {
    return c <= '9' ? unsigned(c - '0') : unsigned(lower(c) - 'a' + 10);
  }

  bool fail(ScanError e) noexcept {
    error_ = e;
    return false;
  }
  // One byte, in state st with `head` head (or chunk-line, trailer) bytes before it;
  // false on a fault or an event (event_ set).
  bool step(unsigned char c, State& st, std::size_t& head) noexcept;
  // The end of a token of a list value (at ',' or CR).
  void end_token() noexcept;
  // A list value's token characters s[0, len) (no OWS, ',' or CR among them), as step()
  // takes them one by one.
  void token_chars(const unsigned char* s, std::size_t len) noexcept;
  // At a field line's start: if the bytes from s hold a whole field name (token
  // characters, at most kMaxNameAtOnce of them) and its ':', all before lim (the end of
  // the input or of the head limit), sets pos_ and field_mask_ as step() would have them
  // before the ':' and returns the name's length; else 0 (step() takes it).
  std::size_t name_at_once(const unsigned char* s, const unsigned char* lim) noexcept;
  static constexpr std::size_t kMaxNameAtOnce = 32;  // longer than any field that matters
  // The ':' ending a field name: the field it is, and its value's state; false on a fault.
  bool name_end(State& st) noexcept;
  // The head's last LF: the semantic checks, and what comes next.
  bool end_head(State& st) noexcept;
  bool end_request(State& st) noexcept {
    st = State::idle;
    event_ = Event::request;
    return false;
  }

  std::size_t max_head_;
  std::size_t max_target_;
  std::size_t head_len_ = 0;    // bytes of the current head (or chunk line, trailer section) so far
  std::size_t target_len_ = 0;  // of the request-target
  uint64_t body_left_ = 0;      // Content-Length value being read, then the bytes to skip
  State state_ = State::idle;
  ScanError error_ = ScanError::none;
  Event event_ = Event::none;
  RequestInfo info_;
  uint8_t pos_ = 0;         // method: of "HEAD" matched (0xff none); version: of "HTTP/d.d"; name: of its field
  uint8_t field_ = f_none;  // the field whose name is being matched, or whose value is read
  uint8_t word_pos_ = 0;    // list value: characters of the token matched against word_mask_
  uint8_t version_ = 0;     // 10 * major + minor
  uint8_t chunk_digits_ = 0;
  bool cl_seen_ = false;    // this head has a Content-Length field
  bool cl_digits_ = false;  // its value has a digit
  bool tail_ = false;       // a value token (or the CL digits) has ended in whitespace
  uint8_t field_mask_ = 0;  // name: the fields (bits) it may still be, pos_ characters matched
  uint8_t word_mask_ = 0;   // list value: the words (bits) the token may still be
  bool tok_chars_ = false;  // the current list token has characters
  bool tok_bad_ = false;    // and is not a word (a space inside it, or a mismatch)
  bool conn_close_ = false, conn_keep_ = false, expect_ = false;
  bool te_seen_ = false, te_last_chunked_ = false, host_bad_ = false;
  uint8_t te_tokens_ = 0;  // codings listed (saturates)
  uint8_t hosts_ = 0;      // Host fields (saturates at 2)
};

inline void RequestScanner::end_token() noexcept {
  // The word the token is, if any: one still matching whose length is what was matched.
  uint8_t word = w_none;
  if (word_mask_ != 0 && !tok_bad_)
    for (uint8_t w = 0; w < w_count; ++w)
      if ((word_mask_ >> w & 1) && word_pos_ == kWordLen[w]) word = w;
  switch (field_) {
    case f_connection:
      if (word == w_close) conn_close_ = true;
      if (word == w_keep_alive) conn_keep_ = true;
      break;
    case f_transfer_encoding:
      if (tok_chars_) {  // empty list elements are ignored (RFC 9110 5.6.1)
        if (te_tokens_ < 255) ++te_tokens_;
        te_last_chunked_ = word == w_chunked;
      }
      break;
    case f_expect:
      if (word == w_continue) expect_ = true;
      break;
    default:
      break;
  }
  tok_chars_ = tok_bad_ = tail_ = false;
  word_mask_ = 0;
  word_pos_ = 0;
}

inline void RequestScanner::token_chars(const unsigned char* s, std::size_t len) noexcept {
  if (len == 0) return;
  if (tail_) tok_bad_ = true;  // a space inside the token
  if (!tok_chars_) word_mask_ = (1u << w_count) - 1;
  // A word stays while the token so far is a prefix of it.
  for (uint8_t w = 0; w < w_count; ++w) {
    if (!(word_mask_ >> w & 1)) continue;
    bool prefix = word_pos_ + len <= kWordLen[w];
    for (std::size_t i = 0; prefix && i < len; ++i)
      prefix = lower(s[i]) == static_cast<unsigned char>(kWord[w][word_pos_ + i]);
    if (!prefix) word_mask_ &= uint8_t(~(1u << w));
  }
  word_pos_ = uint8_t(word_pos_ + len);  // wraps as step() would; the mask is empty by then
  tok_chars_ = true;
}

inline std::size_t RequestScanner::name_at_once(const unsigned char* s, const unsigned char* lim) noexcept {
  static_assert(lengths_match());
  const unsigned char* const stop = lim - s > std::ptrdiff_t(kMaxNameAtOnce) ? s + kMaxNameAtOnce : lim;
  const unsigned char* const q = char_class::run(s, stop, char_class::kTchar);
  const std::size_t len = std::size_t(q - s);
  // A CR (the empty line), a byte that is no token character, a name not whole here or
  // one that would pass the head limit with its ':': byte by byte, so that a fault falls
  // on its byte.
  if (len == 0 || q == stop || *q != ':') return 0;
  // Byte by byte, a field stays in the mask while the name so far is a prefix of its
  // name; at the ':' only the field whose whole name it is counts, so only that one.
  uint8_t mask = 0;
  const uint8_t f = len <= kMaxFieldLen ? kFieldOfLength[len] : uint8_t(f_none);
  if (f != f_none && same_lower(s, kFieldName[f], len)) mask = uint8_t(1u << f);
  field_mask_ = mask;
  pos_ = uint8_t(len);  // len <= kMaxNameAtOnce
  return len;
}

inline bool RequestScanner::name_end(State& st) noexcept {
  // The field whose whole name was matched, if any.
  field_ = pos_ <= kMaxFieldLen ? kFieldOfLength[pos_] : uint8_t(f_none);
  if (field_ != f_none && !(field_mask_ >> field_ & 1)) field_ = f_none;
  if (field_ == f_none) {
    st = State::value;
    return true;
  }
  if (field_ == f_content_length) {
    if (cl_seen_) return fail(ScanError::bad_request);
    cl_seen_ = true;
    cl_digits_ = tail_ = false;
    body_left_ = 0;
    st = State::cl_value;
    return true;
  }
  if (field_ == f_transfer_encoding) te_seen_ = true;
  if (field_ == f_host && hosts_ < 2) ++hosts_;
  tok_chars_ = tok_bad_ = tail_ = false;
  word_mask_ = 0;
  word_pos_ = 0;
  st = State::list_value;
  return true;
}

inline bool RequestScanner::end_head(State& st) noexcept {
  const bool http10 = version_ == 10;
  if (hosts_ > 1 || host_bad_ || (!http10 && hosts_ == 0)) return fail(ScanError::bad_request);
  if (te_seen_) {
    if (cl_seen_ || http10 || !te_last_chunked_) return fail(ScanError::bad_request);
    if (te_tokens_ > 1) return fail(ScanError::not_implemented);
  }
  info_.http10 = http10;
  info_.keep_alive = !conn_close_ && (!http10 || conn_keep_);
  const bool has_body = te_seen_ || body_left_ > 0;
  const bool expect = expect_ && !http10 && has_body;
  cl_seen_ = conn_close_ = conn_keep_ = expect_ = te_seen_ = te_last_chunked_ = host_bad_ = false;
  te_tokens_ = hosts_ = 0;
  if (!has_body) return end_request(st);
  st = body_left_ > 0 ? State::body : State::chunk_size;
  chunk_digits_ = 0;
  if (expect) {
    event_ = Event::expect;
    return false;
  }
  return true;
}

[[gnu::always_inline]] inline bool RequestScanner::step(unsigned char c, State& st, std::size_t& head) noexcept {
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
      pos_ = c == 'H' ? 1 : 0xff;
      info_ = RequestInfo{};
      return true;
    case State::lead_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      st = State::lead;
      return true;
    case State::method:
      if (c == ' ') {
        info_.head = pos_ == 4;
        st = State::target_start;
        target_len_ = 0;
        return true;
      }
      if (!(k & char_class::kTchar)) return fail(ScanError::bad_request);
      pos_ = pos_ < 4 && c == static_cast<unsigned char>("HEAD"[pos_]) ? uint8_t(pos_ + 1) : 0xff;
      return true;
    case State::target_start:
    case State::target:
      if (c == ' ' && st == State::target) {
        st = State::version;
        pos_ = 0;
        return true;
      }
      if (!(k & char_class::kVchar)) return fail(ScanError::bad_request);
      if (++target_len_ > max_target_) return fail(ScanError::uri_too_long);
      st = State::target;
      return true;
    case State::version: {
      if (pos_ == 8) {
        if (c != '\r') return fail(ScanError::bad_request);
        if (version_ != 10 && version_ != 11) return fail(ScanError::bad_version);
        st = State::line_lf;
        return true;
      }
      const char want = "HTTP/#.#"[pos_];
      const bool ok = want == '#' ? is_digit(c) : c == static_cast<unsigned char>(want);
      if (!ok) return fail(ScanError::bad_request);
      if (pos_ == 5) version_ = uint8_t(10 * (c - '0'));
      if (pos_ == 7) version_ = uint8_t(version_ + (c - '0'));
      ++pos_;
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
      field_mask_ = 0;
      for (uint8_t f = 0; f < f_count; ++f)
        if (lower(c) == static_cast<unsigned char>(kFieldName[f][0])) field_mask_ |= uint8_t(1u << f);
      pos_ = 1;
      return true;
    case State::name:
      if (c == ':') return name_end(st);
      if (!(k & char_class::kTchar)) return fail(ScanError::bad_request);
      for (uint8_t f = 0; f < f_count; ++f)
        if ((field_mask_ >> f & 1) &&
            !(pos_ < kFieldLen[f] && lower(c) == static_cast<unsigned char>(kFieldName[f][pos_])))
          field_mask_ &= uint8_t(~(1u << f));
      ++pos_;
      return true;
    case State::value:
      if (c == '\r') {
        st = State::line_lf;
        return true;
      }
      return (k & char_class::kFieldChar) ? true : fail(ScanError::bad_request);
    case State::cl_value:
      if (is_digit(c)) {
        if (tail_) return fail(ScanError::bad_request);
        body_left_ = body_left_ * 10 + uint64_t(c - '0');
        if (body_left_ >= kMaxBody) return fail(ScanError::bad_request);
        cl_digits_ = true;
        return true;
      }
      if (c == ' ' || c == '\t') {
        tail_ = cl_digits_;
        return true;
      }
      if (c == '\r' && cl_digits_) {
        st = State::line_lf;
        return true;
      }
      return fail(ScanError::bad_request);
    case State::list_value:
      if (c == '\r' || (c == ',' && field_ != f_host)) {
        if (field_ == f_host && tok_bad_) host_bad_ = true;
        end_token();
        if (c == '\r') st = State::line_lf;
        return true;
      }
      if (c == ' ' || c == '\t') {
        tail_ = tok_chars_;
        return true;
      }
      if (!(k & char_class::kFieldChar)) return fail(ScanError::bad_request);
      if (field_ == f_host) {
        if (tail_ || !(k & char_class::kHostChar)) tok_bad_ = true;  // a space inside, or no host character
        tok_chars_ = true;
        return true;
      }
      token_chars(&c, 1);
      return true;
    case State::end_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      head = 0;
      return end_head(st);
    // Chunked body (RFC 9112 7.1): chunk-size [ext] CRLF data CRLF ... "0" [ext] CRLF trailers CRLF.
    case State::chunk_size:
      if (k & char_class::kHex) {
        if (++chunk_digits_ > kMaxChunkDigits) return fail(ScanError::bad_request);
        body_left_ = body_left_ * 16 + hex_value(c);
        return true;
      }
      if (chunk_digits_ == 0 || !(c == ';' || c == ' ' || c == '\t' || c == '\r')) return fail(ScanError::bad_request);
      st = State::chunk_ext;
      [[fallthrough]];
    case State::chunk_ext:  // BWS ";" name ["=" value] ...: checked only as field characters
      if (c == '\r') {
        st = State::chunk_lf;
        return true;
      }
      return (k & char_class::kFieldChar) ? true : fail(ScanError::bad_request);
    case State::chunk_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      head = 0;
      st = body_left_ > 0 ? State::chunk_data : State::trailer_start;
      return true;
    case State::chunk_cr:
      if (c != '\r') return fail(ScanError::bad_request);
      st = State::chunk_data_lf;
      return true;
    case State::chunk_data_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      head = 0;
      chunk_digits_ = 0;
      st = State::chunk_size;
      return true;
    case State::trailer_start:
      if (c == '\r') {
        st = State::body_end_lf;
        return true;
      }
      if (!(k & char_class::kTchar)) return fail(ScanError::bad_request);
      st = State::trailer;
      return true;
    case State::trailer:  // name ":" value, checked only as field characters
      if (c == '\r') {
        st = State::trailer_lf;
        return true;
      }
      return (k & char_class::kFieldChar) ? true : fail(ScanError::bad_request);
    case State::trailer_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      st = State::trailer_start;
      return true;
    case State::body_end_lf:
      if (c != '\n') return fail(ScanError::bad_request);
      head = 0;
      return end_request(st);
    case State::body:
    case State::chunk_data:
      break;  // feed() skips data
  }
  return fail(ScanError::bad_request);
}

inline std::size_t RequestScanner::feed(const char* p, std::size_t n) noexcept {
  event_ = Event::none;
  if (error_ != ScanError::none) return 0;
  // The state lives in locals while scanning (registers, not memory the compiler must
  // assume the input may alias). The common parts of a head are taken whole where they
  // are whole in the input and within the limits: the method and its SP, the target's
  // characters, "HTTP/1.x" CRLF, a field name with its ':' and an SP, a value's
  // characters (a list value's tokens, OWS and commas) and its CRLF, the empty line; each
  // leaves the state as step() would byte by byte, and goes on to the next part without
  // coming back to the switch where it can. Any other byte, and every byte that faults,
  // goes through step(), so that a fault falls on its byte with the fault step() picks.
  const auto* const begin = reinterpret_cast<const unsigned char*>(p);
  const auto* s = begin;
  const auto* const end = s + n;
  State st = state_;
  const std::size_t max_head = max_head_;
  // In the head states every byte counts against the head limit, so the fast paths only
  // move s: the head's length is base + (s - begin) (modulo 2^64), and lim is the end of
  // the input or the first byte past the head limit, whichever comes first.
  std::size_t base;
  const unsigned char* lim;
  const auto set_head = [&](std::size_t head) {
    base = head - std::size_t(s - begin);
    lim = std::size_t(end - s) > max_head - head ? s + (max_head - head) : end;
  };
  const auto head_now = [&] { return base + std::size_t(s - begin); };
  set_head(head_len_);
  while (s < end) {
    switch (st) {
      case State::body:
      case State::chunk_data: {
        const std::size_t head = head_now();  // the chunk line's; data does not count
        const std::size_t avail = std::size_t(end - s);
        const std::size_t k = body_left_ < avail ? std::size_t(body_left_) : avail;
        s += k;
        body_left_ -= k;
        set_head(head);
        if (body_left_ != 0) continue;
        if (st == State::chunk_data) {
          st = State::chunk_cr;
          continue;
        }
        end_request(st);
        goto out;
      }
      case State::idle:
      case State::lead: {  // a whole method and its SP
        std::size_t len = 4;
        bool is_head = false;
        if (lim - s < 4 || std::memcmp(s, "GET ", 4) != 0) {
          const unsigned char* const q = char_class::run(s, lim, char_class::kTchar);
          if (q == s || q == lim || *q != ' ') break;
          len = std::size_t(q - s) + 1;
          is_head = len == 5 && std::memcmp(s, "HEAD", 4) == 0;
        }
        info_ = RequestInfo{};
        info_.head = is_head;
        target_len_ = 0;
        s += len;
        st = State::target_start;
      }
        [[fallthrough]];
      case State::target_start:
      case State::target: {  // characters up to the byte that would pass a limit, then the SP
        const unsigned char* t = lim;
        if (std::size_t(t - s) > max_target_ - target_len_) t = s + (max_target_ - target_len_);
        const unsigned char* const q = char_class::vchar_run(s, t);
        if (q != s) st = State::target;
        target_len_ += std::size_t(q - s);
        s = q;
        if (s == end) continue;
        if (s == lim || *s != ' ' || st != State::target) break;
        ++s;
        st = State::version;
        pos_ = 0;
        if (s == end) continue;
      }
        [[fallthrough]];
      case State::version:  // "HTTP/1.x" CR, then the LF
        if (pos_ != 0 || lim - s < 9 || std::memcmp(s, "HTTP/1.", 7) != 0 || (s[7] | 1) != '1' || s[8] != '\r') break;
        version_ = uint8_t(10 + (s[7] - '0'));
        s += 9;
        st = State::line_lf;
        if (s == lim || *s != '\n') continue;
        ++s;
        st = State::field_start;
        goto field_line;
      case State::line_lf:
        if (s == lim || *s != '\n') break;
        ++s;
        st = State::field_start;
        [[fallthrough]];
      case State::field_start:
      field_line : {  // the empty line ending the head, or a name, its ':' and an SP
        if (s == end) continue;
        if (*s == '\r') {
          if (lim - s < 2 || s[1] != '\n') break;
          s += 2;
          set_head(0);
          if (!end_head(st)) goto out;
          continue;
        }
        if (lim - s >= 5 && same_lower(s, "host", 4) &&
            s[4] == ':') {  // the field every request has: as name_at_once()
          field_mask_ = uint8_t(1u << f_host);
          pos_ = 4;
          s += 5;
        } else {
          const std::size_t len = name_at_once(s, lim);
          if (len == 0) break;
          s += len + 1;
        }
        if (!name_end(st)) goto out;
        if (s < lim && *s == ' ') ++s;  // the value's first OWS: no change in any value state
        if (st != State::value) continue;
      }
        [[fallthrough]];
      case State::value:  // characters, then CRLF
        s = char_class::field_run(s, lim);
        if (s == end) continue;
        if (lim - s < 2 || s[0] != '\r' || s[1] != '\n') break;
        s += 2;
        st = State::field_start;
        goto field_line;
      case State::list_value:  // OWS, tokens (a Host value's while no space has ended it), commas, then CRLF
        for (;;) {
          const unsigned char* q = s;
          while (q < lim && (*q == ' ' || *q == '\t')) ++q;
          if (q != s) tail_ = tok_chars_;
          s = q;
          if (field_ == f_host) {
            if (tail_) break;
            s = char_class::run(q, lim, char_class::kHostChar);
            if (s != q) tok_chars_ = true;
            break;
          }
          s = char_class::run(q, lim, char_class::kListChar);
          token_chars(q, std::size_t(s - q));
          if (s == lim || *s != ',') break;
          end_token();
          ++s;
        }
        if (s == end) continue;
        if (lim - s < 2 || s[0] != '\r' || s[1] != '\n') break;
        if (field_ == f_host && tok_bad_) host_bad_ = true;
        end_token();
        s += 2;
        st = State::field_start;
        goto field_line;
      case State::cl_value:  // OWS digits OWS, then CRLF
        for (; s < lim; ++s) {
          if (is_digit(*s)) {
            const uint64_t v = body_left_ * 10 + uint64_t(*s - '0');
            if (tail_ || v >= kMaxBody) break;
            body_left_ = v;
            cl_digits_ = true;
          } else if (*s == ' ' || *s == '\t') {
            tail_ = cl_digits_;
          } else {
            break;
          }
        }
        if (s == end) continue;
        if (lim - s < 2 || s[0] != '\r' || s[1] != '\n' || !cl_digits_) break;
        s += 2;
        st = State::field_start;
        goto field_line;
      case State::name:  // once the name can no longer be one that matters
        if (field_mask_ != 0) break;
        s = char_class::run(s, lim, char_class::kTchar);
        if (s == end) continue;
        break;
      default:
        break;
    }
    std::size_t head = head_now();
    const bool more = step(*s++, st, head);
    set_head(head);
    if (!more) break;
  }
out:
  state_ = st;
  head_len_ = head_now();
  return std::size_t(s - begin);
}

}  // namespace http_example
