// A systematic sweep over the HTTP example's RequestScanner (examples/http_parser.hpp),
// beside the random search of the fuzz target http_request.cpp: the requests below
// (the common ones its fast paths take whole, and their near misses) are run through
// the fuzz target (the scanner fed whole, byte by byte and in random pieces, against
// the target's reference parser) under every head limit from 16 to 272 bytes, so that
// each limit falls on every byte of them: inside a method, a target, "HTTP/1.x", a
// field name, a value, a CRLF. Then each one is fed in two pieces split at every offset,
// and must give what it gives whole: the same events at the same bytes, the same fault,
// the same in_head().
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "../../examples/http_parser.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size);

namespace {

using http_example::RequestScanner;
using http_example::ScanError;

const char* const kRequests[] = {
    // wrk's, alone and pipelined.
    "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    // A browser's.
    "GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\nCookie: session=abc123; theme=dark\r\n\r\n",
    // Other methods, bodies, list values, versions.
    "HEAD / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nPOST /form HTTP/1.1\r\nHOST: a\r\nContent-Length: 5\r\n\r\nhello",
    "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:chunked\r\nExpect: 100-continue\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: "
    "v\r\n\r\n",
    "GET / HTTP/1.1\r\nhost:a\r\nConnection: close, keep-alive ,, x\r\nContent-Length:  7 \r\n\r\n1234567",
    // Near misses: OWS and odd bytes where the fast paths look, faults inside their runs.
    "GET / HTTP/1.1\r\nHost:  a.b \r\nX:\tv\t\r\n\r\nGET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a@b\r\nHost: c\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nX-Value: caf\xc3\xa9 ok\r\nX-Bad: a\x7f b\r\n\r\n",
    "GET /a\x01 HTTP/1.1\r\n\r\n",
    "GET /a HTTP/1.2\r\nHost: a\r\n\r\n",
    "GET /a HTTP/1.1\nHost: a\r\n\r\n",
    "\r\n\r\nGET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    "GET / HTTP/1.1\r\nHost: a\r\nA-Very-Long-Field-Name-Longer-Than-Thirty-Two: v\r\nConnection : close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 12a\r\n\r\n",
};

struct Outcome {
  std::vector<std::pair<std::size_t, http_example::Event>> events;  // (index of the byte that ended it, kind)
  ScanError error = ScanError::none;
  bool in_head = false;
  bool operator==(const Outcome&) const = default;
};

// Feeds s in the pieces [0, cut) and [cut, size).
Outcome feed(std::string_view s, std::size_t cut, std::size_t max_head, std::size_t max_target) {
  RequestScanner sc(max_head, max_target);
  Outcome r;
  for (const auto& [from, to] : {std::pair{std::size_t(0), cut}, std::pair{cut, s.size()}}) {
    for (std::size_t i = from; i < to && sc.error() == ScanError::none;) {
      i += sc.feed(s.data() + i, to - i);
      if (sc.event() != http_example::Event::none) r.events.emplace_back(i - 1, sc.event());
    }
  }
  r.error = sc.error();
  r.in_head = sc.in_head();
  return r;
}

}  // namespace

int main() {
  std::size_t runs = 0;
  for (const char* request : kRequests) {
    const std::string_view s(request);
    for (unsigned limit = 0; limit < 65; ++limit) {  // head limits 16 + 4 * limit (the target's: half of it)
      for (const uint16_t seed : {uint16_t(1), uint16_t(0x9e37)}) {  // two ways of random pieces
        std::string input;
        input += char(limit);
        input += char(seed & 0xff);
        input += char(seed >> 8);
        input += s;
        LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
        ++runs;
      }
      // The head limit on each byte, in turn one past each of the four before it.
      for (std::size_t max_head = 16 + 4 * limit; max_head < 20 + 4 * limit; ++max_head) {
        const Outcome whole = feed(s, s.size(), max_head, max_head / 2);
        for (std::size_t cut = 0; cut <= s.size(); ++cut) FUZZ_CHECK(feed(s, cut, max_head, max_head / 2) == whole);
      }
    }
  }
  std::printf("http_request_sweep: %zu requests, %zu fuzz target runs, all invariants held\n", std::size(kRequests),
              runs);
  return 0;
}
