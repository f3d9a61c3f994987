// Fuzz target: the HTTP example's RequestScanner (examples/http_parser.hpp).
//
// Input: one byte for the head limit, two for the way the data is split, then the bytes
// a client sent. The scanner is fed the data whole, byte by byte and in random pieces;
// all three must agree with each other and with a reference parser written
// independently below (a direct, line-by-line reading of the same grammar): the same
// requests ending at the same bytes, the same fault, the same "head in progress".
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

// The outcome of one head read from the start of s, ignoring the size limit. `at` is the
// index of the byte that decided it (the head's last LF when complete); for an
// incomplete head, s ran out first.
struct Head {
  enum Kind { complete, incomplete, bad, not_implemented } kind;
  std::size_t at = 0;
  uint64_t body = 0;
};

Head reference_head(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  auto span = [&](bool (*ok)(char)) {
    const std::size_t from = i;
    while (i < n && ok(s[i])) ++i;
    return i - from;
  };
  auto ws = [&] {
    while (i < n && (s[i] == ' ' || s[i] == '\t')) ++i;
  };
#define NEED \
  if (i >= n) return {Head::incomplete, i}
#define EXPECT(ch)                                    \
  do {                                                \
    NEED;                                             \
    if (s[i] != (ch)) return {Head::bad, i};          \
    ++i;                                              \
  } while (0)
  for (;;) {  // empty lines before the request line
    NEED;
    if (s[i] != '\r') break;
    ++i;
    EXPECT('\n');
  }
  // request-line = method SP target SP HTTP/d.d CRLF
  std::size_t len = span(is_tchar);
  NEED;
  if (len == 0) return {Head::bad, i};
  EXPECT(' ');
  len = span(is_vchar);
  NEED;
  if (len == 0) return {Head::bad, i};
  EXPECT(' ');
  for (const char* v = "HTTP/"; *v; ++v) EXPECT(*v);
  for (int k = 0; k < 3; ++k) {
    NEED;
    const bool ok = k == 1 ? s[i] == '.' : (s[i] >= '0' && s[i] <= '9');
    if (!ok) return {Head::bad, i};
    ++i;
  }
  EXPECT('\r');
  EXPECT('\n');
  bool has_length = false;
  uint64_t body = 0;
  for (;;) {
    NEED;
    if (s[i] == '\r') {
      ++i;
      NEED;
      if (s[i] != '\n') return {Head::bad, i};
      return {Head::complete, i, body};
    }
    const std::size_t from = i;
    len = span(is_tchar);
    NEED;
    if (len == 0 || s[i] != ':') return {Head::bad, i};
    const std::string name = lower(s.substr(from, len));
    if (name == "transfer-encoding") return {Head::not_implemented, i};
    if (name == "content-length") {
      if (has_length) return {Head::bad, i};
      has_length = true;
      ++i;
      ws();
      const std::size_t digits_from = i;
      while (i < n && s[i] >= '0' && s[i] <= '9') {
        body = body * 10 + uint64_t(s[i] - '0');
        if (body >= 1'000'000'000'000'000ull) return {Head::bad, i};
        ++i;
      }
      NEED;
      if (i == digits_from) return {Head::bad, i};
      ws();
    } else {
      ++i;
      span(is_field_char);
    }
    EXPECT('\r');
    EXPECT('\n');
  }
#undef EXPECT
#undef NEED
}

struct Result {
  std::vector<std::size_t> ends;  // index of the last byte of each request head
  ScanError error = ScanError::none;
  bool in_head = false;
};

Result reference(std::string_view s, std::size_t max_head) {
  Result r;
  std::size_t pos = 0;
  while (pos < s.size()) {
    const Head h = reference_head(s.substr(pos));
    const bool over = h.kind == Head::incomplete ? s.size() - pos > max_head : h.at >= max_head;
    if (over) {
      r.error = ScanError::too_large;
      return r;
    }
    switch (h.kind) {
      case Head::incomplete:
        r.in_head = true;
        return r;
      case Head::bad:
        r.error = ScanError::bad_request;
        return r;
      case Head::not_implemented:
        r.error = ScanError::not_implemented;
        return r;
      case Head::complete:
        r.ends.push_back(pos + h.at);
        pos += h.at + 1;
        pos += std::size_t(std::min<uint64_t>(h.body, s.size() - pos));
        break;
    }
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  fuzz::Params in(data, size);
  const std::size_t max_head = 16 + std::size_t(in.byte()) * 4;
  fuzz::Rng rng(in.u16());
  const std::string_view s = in.rest();
  const Result want = reference(s, max_head);

  // Whole.
  RequestScanner whole(max_head);
  const std::size_t n_whole = whole.feed(s.data(), s.size());
  FUZZ_CHECK(n_whole == want.ends.size());
  FUZZ_CHECK(whole.error() == want.error);
  FUZZ_CHECK(want.error != ScanError::none || whole.in_head() == want.in_head);
  RequestScanner after = whole;  // after a fault, nothing more is scanned
  FUZZ_CHECK(after.error() == ScanError::none || after.feed("GET / HTTP/1.1\r\n\r\n", 18) == 0);

  // Byte by byte: each request ends at the byte the reference says.
  RequestScanner bytes(max_head);
  std::vector<std::size_t> ends;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const std::size_t k = bytes.feed(s.data() + i, 1);
    FUZZ_CHECK(k <= 1);
    if (k == 1) ends.push_back(i);
  }
  FUZZ_CHECK(ends == want.ends);
  FUZZ_CHECK(bytes.error() == want.error);
  FUZZ_CHECK(bytes.in_head() == whole.in_head());

  // Random pieces (empty ones too).
  RequestScanner pieces(max_head);
  std::size_t total = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t k = std::min(s.size() - i, rng.between(0, 64));
    total += pieces.feed(s.data() + i, k);
    i += k;
  }
  FUZZ_CHECK(total == want.ends.size());
  FUZZ_CHECK(pieces.error() == want.error);
  FUZZ_CHECK(pieces.in_head() == whole.in_head());
  return 0;
}
