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

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace http_example {

namespace char_class {
constexpr uint8_t kTchar = 1, kVchar = 2, kFieldChar = 4, kHostChar = 8, kHex = 16;

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
  // Tokens of list values that matter.
  enum Word : uint8_t { w_close, w_keep_alive, w_chunked, w_continue, w_count, w_none = 0xff };
  static constexpr const char* kWord[w_count] = {"close", "keep-alive", "chunked", "100-continue"};
  static constexpr uint8_t kWordLen[w_count] = {5, 10, 7, 12};
  static constexpr uint64_t kMaxBody = 1'000'000'000'000'000;  // 10^15: no overflow below it
  static constexpr uint8_t kMaxChunkDigits = 15;               // 16^15 > any body we would skip

  static constexpr bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }
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
  // At a field line's start: if the bytes from s hold a whole field name (token
  // characters, at most kMaxNameAtOnce of them) and its ':', all within the head limit,
  // takes the name in one go as step() would byte by byte (pos_ and field_mask_ as they
  // stand before the ':') and returns its length; else 0 (step() takes it).
  std::size_t name_at_once(const unsigned char* s, const unsigned char* end, std::size_t head) noexcept;
  static constexpr std::size_t kMaxNameAtOnce = 32;  // longer than any field that matters
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
  if (tok_chars_ && !tok_bad_)
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

inline std::size_t RequestScanner::name_at_once(const unsigned char* s, const unsigned char* end,
                                                std::size_t head) noexcept {
  const unsigned char* const stop = end - s > std::ptrdiff_t(kMaxNameAtOnce) ? s + kMaxNameAtOnce : end;
  const unsigned char* q = s;
  while (q < stop && (char_class::kTable.c[*q] & char_class::kTchar)) ++q;
  const std::size_t len = std::size_t(q - s);
  // A CR (the empty line), a byte that is no token character, a name not whole here or
  // one that would pass the head limit: byte by byte, so that a fault falls on its byte.
  if (len == 0 || q == stop || *q != ':' || head + len > max_head_) return 0;
  // Byte by byte, a field stays in the mask while the name so far is a prefix of its
  // name; at the ':' only the fields whose whole name it is count. So only those.
  uint8_t mask = 0;
  for (uint8_t f = 0; f < f_count; ++f) {
    if (len != kFieldLen[f]) continue;
    std::size_t i = 0;
    while (i < len && lower(s[i]) == static_cast<unsigned char>(kFieldName[f][i])) ++i;
    if (i == len) mask = uint8_t(mask | (1u << f));
  }
  field_mask_ = mask;
  pos_ = uint8_t(len);  // len <= kMaxNameAtOnce
  return len;
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
      if (c == ':') {
        field_ = f_none;
        for (uint8_t f = 0; f < f_count; ++f)
          if ((field_mask_ >> f & 1) && pos_ == kFieldLen[f]) field_ = f;
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
      if (tail_) tok_bad_ = true;  // a space inside the token
      if (field_ == f_host) {
        if (!(k & char_class::kHostChar)) tok_bad_ = true;
        tok_chars_ = true;
        return true;
      }
      if (!tok_chars_) word_mask_ = (1u << w_count) - 1;
      for (uint8_t w = 0; w < w_count; ++w)
        if ((word_mask_ >> w & 1) &&
            !(word_pos_ < kWordLen[w] && lower(c) == static_cast<unsigned char>(kWord[w][word_pos_])))
          word_mask_ &= uint8_t(~(1u << w));
      ++word_pos_;
      tok_chars_ = true;
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
  // assume the input may alias), and runs of bytes that only continue a target or field
  // value take a tight loop; the bytes that end or start a token go through step() one
  // at a time.
  const auto* const begin = reinterpret_cast<const unsigned char*>(p);
  const auto* s = begin;
  const auto* const end = s + n;
  State st = state_;
  std::size_t head = head_len_;
  while (s < end) {
    uint8_t run = 0;
    const unsigned char* run_end = end;
    switch (st) {
      case State::body:
      case State::chunk_data: {
        const std::size_t avail = std::size_t(end - s);
        const std::size_t k = body_left_ < avail ? std::size_t(body_left_) : avail;
        s += k;
        body_left_ -= k;
        if (body_left_ == 0) {
          if (st == State::chunk_data) {
            st = State::chunk_cr;
            continue;
          }
          end_request(st);
          goto out;
        }
        continue;
      }
      case State::idle:  // the common method at once: as step() takes "GET " byte by byte
        if (end - s >= 4 && head + 4 <= max_head_ && std::memcmp(s, "GET ", 4) == 0) {
          head += 4;
          info_ = RequestInfo{};
          target_len_ = 0;
          s += 4;
          st = State::target_start;
          continue;
        }
        break;
      case State::list_value:  // a Host value's characters, while no space has ended its token
        if (field_ == f_host && !tail_) run = char_class::kHostChar;
        break;
      case State::target:  // up to the byte that would make the target too long
        run = char_class::kVchar;
        if (std::size_t(end - s) > max_target_ - target_len_) run_end = s + (max_target_ - target_len_);
        break;
      case State::value:
        run = char_class::kFieldChar;
        break;
      case State::name:  // once the name can no longer be one that matters
        if (field_mask_ == 0) run = char_class::kTchar;
        break;
      case State::field_start:  // a whole field name up to its ':' at once, when it is there
        if (const std::size_t len = name_at_once(s, end, head)) {
          head += len;
          s += len;
          st = State::name;
          continue;
        }
        break;
      case State::version:  // the whole "HTTP/d.d" CR at once when it is there
        if (pos_ == 0 && end - s >= 9 && std::memcmp(s, "HTTP/1.", 7) == 0 && (s[7] == '0' || s[7] == '1') &&
            s[8] == '\r') {
          head += 9;
          if (head > max_head_) {
            fail(ScanError::too_large);
            goto out;
          }
          version_ = uint8_t(10 + (s[7] - '0'));
          s += 9;
          st = State::line_lf;
          continue;
        }
        break;
      default:
        break;
    }
    if (run) {
      const unsigned char* q = s;
      while (q < run_end && (char_class::kTable.c[*q] & run)) ++q;
      head += std::size_t(q - s);
      if (head > max_head_) {
        fail(ScanError::too_large);
        break;
      }
      if (st == State::target) target_len_ += std::size_t(q - s);
      if (st == State::list_value && q != s) tok_chars_ = true;  // as step() marks each one
      s = q;
      if (s == end) break;
    }
    if (!step(*s++, st, head)) break;
  }
out:
  state_ = st;
  head_len_ = head;
  return std::size_t(s - begin);
}

}  // namespace http_example
