// Fuzz target: the HTTP example's RequestScanner (examples/http_parser.hpp).
//
// Input: one byte for the head limit (the target limit is half of it), two for the way
// the data is split, then the bytes a client sent. The scanner is fed the data whole,
// byte by byte and in random pieces; all three must agree with a reference parser
// written independently below (a direct, request-by-request reading of the same
// grammar): the same events (requests and 100-continue points, with what each response
// needs) ending at the same bytes, the same fault, the same "head in progress".
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../examples/http_parser.hpp"
#include "fuzz_check.hpp"

using http_example::RequestScanner;
using http_example::ScanError;

namespace {

bool is_tchar(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
}
bool is_vchar(char ch) { return static_cast<unsigned char>(ch) >= 0x21 && static_cast<unsigned char>(ch) <= 0x7e; }
bool is_field_char(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}
std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return r;
}

// The reference: reads the stream request by request with plain index arithmetic,
// checking the limits byte by byte as it goes (the scanner must fault at the same byte,
// so that the same fault wins when there are several).
struct Event {
  std::size_t at;  // index of the byte that ended it
  http_example::Event kind;
  bool head, http10, keep_alive;
  bool operator==(const Event&) const = default;
};

struct Result {
  std::vector<Event> events;
  ScanError error = ScanError::none;
  bool in_head = false;
};

struct Stop {
  ScanError error;  // none: the input ran out
};

class Reference {
 public:
  Reference(std::string_view s, std::size_t max_head, std::size_t max_target)
      : s_(s), max_head_(max_head), max_target_(max_target) {}

  Result run() {
    Result r;
    try {
      while (i_ < s_.size()) one(r);
    } catch (const Stop& stop) {
      r.error = stop.error;
      r.in_head = stop.error == ScanError::none && in_head_;
    }
    return r;
  }

 private:
  // The byte at i_, counted against the head (or chunk line, trailer) limit.
  unsigned char at() {
    if (i_ >= s_.size()) throw Stop{ScanError::none};
    if (i_ - meta_start_ + 1 > max_head_) throw Stop{ScanError::too_large};
    return static_cast<unsigned char>(s_[i_]);
  }
  unsigned char take() {
    const unsigned char c = at();
    ++i_;
    return c;
  }
  static void bad() { throw Stop{ScanError::bad_request}; }
  void expect(char c) {
    if (take() != static_cast<unsigned char>(c)) bad();
  }
  // Field characters up to CR (consumed), as a string.
  std::string value_to_cr() {
    std::string v;
    for (unsigned char c = at(); c != '\r'; c = at()) {
      if (!is_field_char(char(c))) bad();
      v += char(c);
      ++i_;
    }
    ++i_;
    return v;
  }
  static std::string trim(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return std::string(v);
  }
  static std::vector<std::string> elements(std::string_view v) {  // of a comma list, trimmed
    std::vector<std::string> r;
    for (;;) {
      const std::size_t comma = v.find(',');
      r.push_back(trim(v.substr(0, comma)));
      if (comma == std::string_view::npos) return r;
      v.remove_prefix(comma + 1);
    }
  }

  void one(Result& r) {
    in_head_ = true;
    meta_start_ = i_;
    while (at() == '\r') {  // empty lines before the request line
      ++i_;
      expect('\n');
    }
    // request-line = method SP target SP HTTP/d.d CRLF
    std::string method;
    for (unsigned char c = take(); c != ' '; c = take()) {
      if (!is_tchar(char(c))) bad();
      method += char(c);
    }
    if (method.empty()) bad();
    std::size_t target = 0;
    for (unsigned char c = take(); !(c == ' ' && target > 0); c = take()) {
      if (!is_vchar(char(c))) bad();
      if (++target > max_target_) throw Stop{ScanError::uri_too_long};
    }
    for (const char* v = "HTTP/"; *v; ++v) expect(*v);
    const unsigned char major = take();
    if (major < '0' || major > '9') bad();
    expect('.');
    const unsigned char minor = take();
    if (minor < '0' || minor > '9') bad();
    expect('\r');
    if (major != '1' || (minor != '0' && minor != '1')) throw Stop{ScanError::bad_version};
    const bool http10 = minor == '0';
    expect('\n');
    bool has_length = false, te = false, close = false, keep = false, expect_continue = false, host_bad = false;
    uint64_t length = 0;
    int hosts = 0;
    std::vector<std::string> codings;
    for (;;) {
      if (at() == '\r') {
        ++i_;
        expect('\n');
        break;
      }
      std::string name;
      for (unsigned char c = take(); c != ':'; c = take()) {
        if (!is_tchar(char(c))) bad();
        name += char(c);
      }
      if (name.empty()) bad();
      name = lower(name);
      if (name == "content-length") {
        if (has_length) bad();
        has_length = true;
        while (at() == ' ' || at() == '\t') ++i_;
        std::size_t digits = 0;
        while (at() >= '0' && at() <= '9') {
          length = length * 10 + uint64_t(at() - '0');
          if (length >= 1'000'000'000'000'000ull) bad();
          ++i_;
          ++digits;
        }
        while (at() == ' ' || at() == '\t') ++i_;
        if (take() != '\r' || digits == 0) bad();
      } else {
        const std::string v = value_to_cr();
        if (name == "host") {
          ++hosts;
          for (const char c : trim(v))
            if (!is_host_char(c)) host_bad = true;
        } else if (name == "connection" || name == "expect" || name == "transfer-encoding") {
          for (const std::string& e : elements(v)) {
            const std::string w = lower(e);
            if (name == "connection") {
              close = close || w == "close";
              keep = keep || w == "keep-alive";
            } else if (name == "expect") {
              expect_continue = expect_continue || w == "100-continue";
            } else if (!e.empty()) {
              codings.push_back(w);
            }
          }
          te = te || name == "transfer-encoding";
        }
      }
      expect('\n');
    }
    // The head's last LF (at i_ - 1): the semantic checks.
    if (hosts > 1 || host_bad || (!http10 && hosts == 0)) bad();
    if (te) {
      if (has_length || http10 || codings.empty() || codings.back() != "chunked") bad();
      if (codings.size() > 1) throw Stop{ScanError::not_implemented};
    }
    in_head_ = false;
    meta_start_ = i_;
    const bool head = method == "HEAD";
    const bool keep_alive = !close && (!http10 || keep);
    auto event = [&](http_example::Event kind) { r.events.push_back({i_ - 1, kind, head, http10, keep_alive}); };
    if (!te && length == 0) {
      event(http_example::Event::request);
      return;
    }
    if (expect_continue && !http10) event(http_example::Event::expect);
    if (!te) {
      if (s_.size() - i_ < length) throw Stop{ScanError::none};
      i_ += std::size_t(length);
      event(http_example::Event::request);
      return;
    }
    for (;;) {  // chunk-size [ext] CRLF data CRLF ... "0" [ext] CRLF trailers CRLF
      meta_start_ = i_;
      uint64_t size = 0;
      int digits = 0;
      while (is_hex(at())) {
        if (++digits > 15) bad();
        size = size * 16 + uint64_t(hex_value(at()));
        ++i_;
      }
      const unsigned char c = at();
      if (digits == 0 || !(c == ';' || c == ' ' || c == '\t' || c == '\r')) bad();
      value_to_cr();
      expect('\n');
      meta_start_ = i_;
      if (size == 0) break;
      if (s_.size() - i_ < size) throw Stop{ScanError::none};
      i_ += std::size_t(size);
      meta_start_ = i_;
      expect('\r');
      expect('\n');
    }
    while (at() != '\r') {  // trailer fields
      if (!is_tchar(char(take()))) bad();
      value_to_cr();
      expect('\n');
    }
    ++i_;
    expect('\n');
    event(http_example::Event::request);
  }

  static bool is_hex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }
  static unsigned hex_value(unsigned char c) { return c <= '9' ? unsigned(c - '0') : unsigned((c | 0x20) - 'a' + 10); }
  static bool is_host_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) return true;
    return std::string_view("-._~!$&'()*+,;=%:[]").find(c) != std::string_view::npos;
  }

  std::string_view s_;
  std::size_t max_head_, max_target_;
  std::size_t i_ = 0;
  std::size_t meta_start_ = 0;  // where the bytes counted against max_head began
  bool in_head_ = false;
};

// Feeds the scanner [from, from + n) of s, appending its events (with their indices).
void drive(RequestScanner& sc, std::string_view s, std::size_t from, std::size_t n, std::vector<Event>& out) {
  for (std::size_t used = 0; used < n;) {
    const std::size_t k = sc.feed(s.data() + from + used, n - used);
    used += k;
    if (sc.event() != http_example::Event::none) {
      FUZZ_CHECK(k > 0);
      const auto& r = sc.request();
      out.push_back({from + used - 1, sc.event(), r.head, r.http10, r.keep_alive});
    } else {
      FUZZ_CHECK(used == n || sc.error() != ScanError::none);  // all used, or a fault
    }
    if (sc.error() != ScanError::none) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  fuzz::Params in(data, size);
  const std::size_t max_head = 16 + std::size_t(in.byte()) * 4;
  const std::size_t max_target = max_head / 2;
  fuzz::Rng rng(in.u16());
  const std::string_view s = in.rest();
  const Result want = Reference(s, max_head, max_target).run();

  // Whole.
  RequestScanner whole(max_head, max_target);
  std::vector<Event> got;
  drive(whole, s, 0, s.size(), got);
  FUZZ_CHECK(got == want.events);
  FUZZ_CHECK(whole.error() == want.error);
  FUZZ_CHECK(want.error != ScanError::none || whole.in_head() == want.in_head);
  RequestScanner after = whole;  // after a fault, nothing more is scanned
  FUZZ_CHECK(after.error() == ScanError::none || after.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27) == 0);

  // Byte by byte.
  RequestScanner bytes(max_head, max_target);
  got.clear();
  for (std::size_t i = 0; i < s.size() && bytes.error() == ScanError::none; ++i) drive(bytes, s, i, 1, got);
  FUZZ_CHECK(got == want.events);
  FUZZ_CHECK(bytes.error() == want.error);
  FUZZ_CHECK(bytes.in_head() == whole.in_head());

  // Random pieces (empty ones too).
  RequestScanner pieces(max_head, max_target);
  got.clear();
  for (std::size_t i = 0; i < s.size() && pieces.error() == ScanError::none;) {
    const std::size_t k = std::min(s.size() - i, rng.between(0, 64));
    drive(pieces, s, i, k, got);
    i += k;
  }
  FUZZ_CHECK(got == want.events);
  FUZZ_CHECK(pieces.error() == want.error);
  FUZZ_CHECK(pieces.in_head() == whole.in_head());
  return 0;
}
