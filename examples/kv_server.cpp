// A key-value server speaking Redis's protocol (RESP2), so redis-cli, redis-benchmark
// and any Redis client library can talk to it. Commands: PING, ECHO, SET (with EX, PX,
// NX, XX, KEEPTTL), GET, DEL, EXISTS, INCR, MGET, MSET, EXPIRE, TTL, PTTL, QUIT, and the
// CONFIG GET and COMMAND that redis-benchmark and redis-cli ask at start.
// Replies and errors read as Redis's do.
//
//   kv_server [PORT=6380 (0: any free port)] [WORKERS=1 (0: one per CPU)] [HOST=127.0.0.1]
//             [--max-bulk=BYTES (default 64 MiB: the longest value, and about the largest request)]
//
// It prints "listening on HOST:PORT" once ready, and shuts down on SIGINT or SIGTERM.
// Try it with `redis-cli -p 6380`, or `nc 127.0.0.1 6380` and inline commands ("SET k v").
//
// Design: one fibre per connection reads into its own buffer and parses every request
// already received (kv_resp.hpp) before writing, so the replies of pipelined requests
// go out in one write (as Redis answers everything in its query buffer before it reads
// again). It parses its own buffer rather than calling read_line / read_exact, because it
// must know whether the next request is already whole: if not, the replies gathered so
// far go out before the read that waits for it (and no line becomes a std::string).
// The keyspace (kv_store.hpp) is shared by all workers: 64 shards, each under a
// std::mutex. A request the protocol cannot frame (a bad length, a bulk string longer
// than --max-bulk) gets "-ERR Protocol error: ..." and its connection is closed, as
// Redis does; the other connections go on being served. A well-framed request that is
// wrong (unknown command, bad arguments) gets an error reply and the connection stays.
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io.hpp>
#include <spindle/io/signals.hpp>
#include <spindle/spindle.hpp>
#include <spindle/waiting.hpp>

#include "kv_resp.hpp"
#include "kv_store.hpp"

namespace {

using kv_example::Keyspace;
using kv_example::Parse;
using kv_example::RequestParser;
using kv_example::Shard;
using kv_example::Value;

constexpr std::size_t kReadChunk = 16 * 1024;   // the buffer's size while requests are small
constexpr std::size_t kFlushAt = 64 * 1024;     // replies gathered beyond this are written at once
constexpr std::size_t kMaxDrain = 1024 * 1024;  // bytes read and dropped before closing after a protocol error
constexpr std::chrono::seconds kMaxLinger{1};   // and for how long at most

// Set by main before the server starts, read-only afterwards.
std::size_t g_max_bulk = 64 * 1024 * 1024;

// ---- replies ----

void reply_int(std::string& out, long long v) {
  char buf[24];
  out += ':';
  out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  out += "\r\n";
}
void reply_bulk(std::string& out, std::string_view s) {
  char buf[24];
  out += '$';
  out.append(buf, std::to_chars(buf, buf + sizeof buf, s.size()).ptr);
  out += "\r\n";
  out += s;
  out += "\r\n";
}
void reply_null(std::string& out) { out += "$-1\r\n"; }
void reply_array(std::string& out, std::size_t n) {
  char buf[24];
  out += '*';
  out.append(buf, std::to_chars(buf, buf + sizeof buf, n).ptr);
  out += "\r\n";
}
// An error line must not contain CR or LF: a client's bytes quoted in one are cleaned.
void reply_error(std::string& out, std::string_view msg) {
  out += "-";
  for (char c : msg) out += (c == '\r' || c == '\n') ? ' ' : c;
  out += "\r\n";
}

bool iequals(std::string_view a, std::string_view upper) {
  if (a.size() != upper.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (char(a[i] & ~0x20) != upper[i]) return false;  // upper holds letters only
  return true;
}
std::string lower(std::string_view s) {
  std::string r(s.substr(0, 64));
  for (char& c : r)
    if (c >= 'A' && c <= 'Z') c = char(c + 32);
  return r;
}

// A decimal integer as Redis accepts one: optional '-', digits without leading zeros,
// nothing else, in range ("0" yes; "007", "-0", "+1", " 1" no).
bool parse_int(std::string_view s, long long& v) {
  if (s.empty() || s.size() > 20) return false;
  const std::size_t d = s[0] == '-' ? 1 : 0;
  if (s.size() > d + 1 && s[d] == '0') return false;
  if (d == 1 && s == "-0") return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

// ---- commands ----

class Command {
 public:
  Command(Keyspace& ks, const RequestParser& p, const char* data, std::string& out)
      : ks_(ks), p_(p), data_(data), out_(out) {}
  std::size_t argc() const { return p_.argc(); }
  std::string_view arg(std::size_t i) const { return p_.arg(data_, i); }

  // Runs the request; returns false if the connection should close after the reply (QUIT).
  bool run() {
    const std::string_view name = arg(0);
    const std::size_t n = argc();
    if (iequals(name, "GET")) {
      if (n != 2) return arity();
      get();
    } else if (iequals(name, "SET")) {
      if (n < 3) return arity();
      set();
    } else if (iequals(name, "PING")) {
      if (n > 2) return arity();
      if (n == 2)
        reply_bulk(out_, arg(1));
      else
        out_ += "+PONG\r\n";
    } else if (iequals(name, "ECHO")) {
      if (n != 2) return arity();
      reply_bulk(out_, arg(1));
    } else if (iequals(name, "DEL")) {
      if (n < 2) return arity();
      del_or_exists(true);
    } else if (iequals(name, "EXISTS")) {
      if (n < 2) return arity();
      del_or_exists(false);
    } else if (iequals(name, "INCR")) {
      if (n != 2) return arity();
      incr();
    } else if (iequals(name, "MGET")) {
      if (n < 2) return arity();
      mget();
    } else if (iequals(name, "MSET")) {
      if (n < 3 || n % 2 == 0) return arity();
      mset();
    } else if (iequals(name, "EXPIRE")) {
      if (n < 3) return arity();
      expire();
    } else if (iequals(name, "TTL") || iequals(name, "PTTL")) {
      if (n != 2) return arity();
      ttl(name.size() == 4);
    } else if (iequals(name, "CONFIG")) {
      config();
    } else if (iequals(name, "COMMAND")) {
      reply_array(out_, 0);  // redis-cli asks for command docs (hints); it does without
    } else if (iequals(name, "QUIT")) {
      out_ += "+OK\r\n";
      return false;
    } else {
      std::string msg = "ERR unknown command '" + std::string(name.substr(0, 128)) + "', with args beginning with: ";
      for (std::size_t i = 1; i < n && i < 4; ++i) msg += "'" + std::string(arg(i).substr(0, 128)) + "' ";
      reply_error(out_, msg);
    }
    return true;
  }

 private:
  bool arity() {
    reply_error(out_, "ERR wrong number of arguments for '" + lower(arg(0)) + "' command");
    return true;
  }
  void not_integer() { reply_error(out_, "ERR value is not an integer or out of range"); }

  // CONFIG GET save / appendonly, which redis-benchmark asks: this server keeps nothing
  // on disk. Any other parameter is unknown (an empty list, as Redis answers).
  void config() {
    if (argc() == 3 && iequals(arg(1), "GET")) {
      const std::string_view p = arg(2);
      const char* v = p == "save" ? "" : p == "appendonly" ? "no" : nullptr;
      if (!v) return reply_array(out_, 0);
      reply_array(out_, 2);
      reply_bulk(out_, p);
      return reply_bulk(out_, v);
    }
    reply_error(out_, "ERR only CONFIG GET is supported");
  }

  void get() {
    Shard& sh = ks_.shard_of(arg(1));
    int64_t now = 0;
    std::lock_guard lk(sh.mu);
    if (const Value* v = sh.find(arg(1), now))
      reply_bulk(out_, v->data);
    else
      reply_null(out_);
  }

  void set() {
    bool nx = false, xx = false, keepttl = false, has_expiry = false;
    long long ms = 0;
    for (std::size_t i = 3; i < argc(); ++i) {
      const std::string_view o = arg(i);
      if (iequals(o, "NX") && !xx) {
        nx = true;
      } else if (iequals(o, "XX") && !nx) {
        xx = true;
      } else if (iequals(o, "KEEPTTL") && !has_expiry) {
        keepttl = true;
      } else if ((iequals(o, "EX") || iequals(o, "PX")) && !has_expiry && !keepttl && i + 1 < argc()) {
        long long t;
        if (!parse_int(arg(++i), t)) return not_integer();
        const long long unit = o.size() == 2 && (o[0] | 0x20) == 'e' ? 1000 : 1;
        if (t <= 0 || t > (INT64_MAX / 2) / unit) return reply_error(out_, "ERR invalid expire time in 'set' command");
        ms = t * unit;
        has_expiry = true;
      } else {
        return reply_error(out_, "ERR syntax error");
      }
    }
    Shard& sh = ks_.shard_of(arg(1));
    int64_t now = has_expiry ? kv_example::now_ms() : 0;
    {
      std::lock_guard lk(sh.mu);
      Value* v = (nx || xx || keepttl) ? sh.find(arg(1), now) : nullptr;
      if ((nx && v) || (xx && !v)) {
        reply_null(out_);
        return;
      }
      if (!v) v = &sh.get_or_make(arg(1), now);
      v->data.assign(arg(2));
      if (!keepttl) v->expires_ms = has_expiry ? now + ms : 0;
    }
    out_ += "+OK\r\n";
  }

  void del_or_exists(bool del) {
    long long count = 0;
    int64_t now = 0;
    for (std::size_t i = 1; i < argc(); ++i) {
      Shard& sh = ks_.shard_of(arg(i));
      std::lock_guard lk(sh.mu);
      count += del ? sh.erase(arg(i), now) : sh.find(arg(i), now) != nullptr;
    }
    reply_int(out_, count);
  }

  void incr() {
    Shard& sh = ks_.shard_of(arg(1));
    int64_t now = 0;
    long long v = 0;
    {
      std::lock_guard lk(sh.mu);
      Value& val = sh.get_or_make(arg(1), now);
      if (!val.data.empty() && !parse_int(val.data, v)) return not_integer();
      if (v == INT64_MAX) return reply_error(out_, "ERR increment or decrement would overflow");
      ++v;
      char buf[24];
      val.data.assign(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);  // the TTL stays, as in Redis
    }
    reply_int(out_, v);
  }

  std::vector<std::size_t> shards_of(std::size_t first, std::size_t step) const {
    std::vector<std::size_t> ids;
    for (std::size_t i = first; i < argc(); i += step) ids.push_back(ks_.shard_id(arg(i)));
    return ids;
  }

  void mget() {
    int64_t now = 0;
    Keyspace::MultiLock lk(ks_, shards_of(1, 1));
    reply_array(out_, argc() - 1);
    for (std::size_t i = 1; i < argc(); ++i) {
      if (const Value* v = ks_.shard_of(arg(i)).find(arg(i), now))
        reply_bulk(out_, v->data);
      else
        reply_null(out_);
    }
  }

  void mset() {
    int64_t now = 0;
    {
      Keyspace::MultiLock lk(ks_, shards_of(1, 2));
      for (std::size_t i = 1; i + 1 < argc(); i += 2) {
        Value& v = ks_.shard_of(arg(i)).get_or_make(arg(i), now);
        v.data.assign(arg(i + 1));
        v.expires_ms = 0;
      }
    }
    out_ += "+OK\r\n";
  }

  void expire() {
    if (argc() > 3) return reply_error(out_, "ERR Unsupported option " + std::string(arg(3).substr(0, 64)));
    long long sec;
    if (!parse_int(arg(2), sec)) return not_integer();
    if (sec > (INT64_MAX / 2) / 1000) return reply_error(out_, "ERR invalid expire time in 'expire' command");
    Shard& sh = ks_.shard_of(arg(1));
    int64_t now = kv_example::now_ms();
    std::lock_guard lk(sh.mu);
    Value* v = sh.find(arg(1), now);
    if (!v) return reply_int(out_, 0);
    if (sec <= 0)  // a deadline already past deletes the key, as in Redis
      sh.erase(arg(1), now);
    else
      v->expires_ms = now + sec * 1000;
    reply_int(out_, 1);
  }

  // TTL: seconds left (rounded), -1 without expiry, -2 for a missing key. PTTL: in ms.
  void ttl(bool ms) {
    Shard& sh = ks_.shard_of(arg(1));
    int64_t now = kv_example::now_ms();
    std::lock_guard lk(sh.mu);
    const Value* v = sh.find(arg(1), now);
    if (!v) return reply_int(out_, -2);
    if (v->expires_ms == 0) return reply_int(out_, -1);
    const long long left = v->expires_ms - now;
    reply_int(out_, ms ? left : (left + 500) / 1000);
  }

  Keyspace& ks_;
  const RequestParser& p_;
  const char* data_;
  std::string& out_;
};

// ---- connections ----

// Sends the last reply and ends the connection: stops sending, then reads and drops what
// the client had already sent (at most kMaxDrain bytes, for kMaxLinger at most), so that
// closing does not reset the connection before the client has read the reply.
void send_and_linger(spindle::TcpStream& s, std::string_view last) {
  try {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point until = Clock::now() + kMaxLinger;
    s.set_timeout(kMaxLinger);
    s.write_all(last);
    s.shutdown_write();
    char buf[16 * 1024];
    for (std::size_t dropped = 0; dropped < kMaxDrain;) {
      const auto left = until - Clock::now();
      if (left <= Clock::duration::zero()) return;
      s.set_timeout(left);
      const std::size_t n = s.read(buf, sizeof buf);
      if (n == 0) return;
      dropped += n;
    }
  } catch (const std::exception&) {
    // Timed out, reset or gone: the connection ends either way.
  }
}

void serve(Keyspace& ks, spindle::TcpStream s) {
  std::vector<char> in(kReadChunk);
  std::size_t beg = 0, end = 0;  // in[beg, end): received, not yet parsed into a request
  std::string out;
  RequestParser parser(g_max_bulk);
  try {
    for (;;) {
      // Every request already received, then their replies in one write.
      for (;;) {
        const Parse r = parser.parse(in.data() + beg, end - beg);
        if (r == Parse::need_more) break;
        if (r == Parse::error) {
          reply_error(out, "ERR " + parser.error());
          send_and_linger(s, out);
          return;
        }
        bool go_on = true;
        if (parser.argc() > 0) go_on = Command(ks, parser, in.data() + beg, out).run();
        beg += parser.consumed();
        parser.reset();
        if (!go_on) {
          s.write_all(out);
          return;
        }
        if (out.size() >= kFlushAt) {
          s.write_all(out);
          out.clear();
        }
      }
      if (!out.empty()) {
        s.write_all(out);
        out.clear();
      }
      // Keep the partial request at the front, and make room for what it still needs.
      if (beg > 0) {
        std::memmove(in.data(), in.data() + beg, end - beg);
        end -= beg;
        beg = 0;
      }
      if (in.size() > kReadChunk && end < kReadChunk && parser.wanted() <= kReadChunk) {
        in.resize(kReadChunk);  // a big request is done: give its memory back
        in.shrink_to_fit();
      }
      if (parser.wanted() > in.size())
        in.resize(parser.wanted());
      else if (in.size() - end < kReadChunk / 4)
        in.resize(in.size() * 2);  // a long line or many bulk strings; the parser bounds it
      const std::size_t n = s.read(in.data() + end, in.size() - end);
      if (n == 0) return;  // the client closed
      end += n;
    }
  } catch (const std::system_error&) {
    // The client reset the connection or vanished: only this connection ends.
  }
}

int serve_until_signal(Keyspace& ks, const char* host, uint16_t port) {
  spindle::Server srv =
      spindle::start_server([&ks](spindle::TcpStream s) { serve(ks, std::move(s)); }, host, port, {.nodelay = true});
  std::printf("listening on %s\n", srv.addresses()[0].to_string().c_str());
  std::fflush(stdout);
  const int sig = spindle::wait_signal({SIGINT, SIGTERM});
  std::printf("got %s: closing %zu connection(s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", srv.connections());
  std::fflush(stdout);
  srv.close();
  // Wait for the accept task to close its listener and for every connection to end
  // (cancelled by close_clients), even when none is open: returning earlier would leave
  // the accept task to the runtime's shutdown, still holding the listener. The sweep
  // repeats because a connection accepted as the server closed may register after it.
  for (int i = 0; i < 50; ++i) {
    srv.close_clients();
    try {
      spindle::timeout(std::chrono::milliseconds(100), [&] { srv.wait_closed(); });
      return 0;
    } catch (const spindle::TimeoutError&) {
    }
  }
  std::fprintf(stderr, "kv_server: %zu connection(s) would not end within 5 s\n", srv.connections());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask (signals.hpp).
  spindle::block_signals({SIGINT, SIGTERM});
  try {
    std::vector<const char*> pos;
    for (int i = 1; i < argc; ++i) {
      const std::string_view a = argv[i];
      if (a.starts_with("--max-bulk=")) {
        const std::string v(a.substr(11));
        char* e = nullptr;
        const unsigned long long b = std::strtoull(v.c_str(), &e, 10);
        if (v.empty() || *e != '\0' || b == 0 || b > (1ull << 32))
          throw std::invalid_argument("--max-bulk: expected a byte count from 1 to 4 GiB, got '" + v + "'");
        g_max_bulk = static_cast<std::size_t>(b);
      } else if (a.starts_with("--")) {
        throw std::invalid_argument("unknown option '" + std::string(a) + "'");
      } else {
        pos.push_back(argv[i]);
      }
    }
    const uint16_t port = pos.size() > 0 ? spindle::parse_port(pos[0]) : 6380;
    const unsigned workers = pos.size() > 1 ? unsigned(std::atoi(pos[1])) : 1;
    const char* host = pos.size() > 2 ? pos[2] : "127.0.0.1";
    Keyspace ks;  // outlives the runtime, and so every connection
    return spindle::run([&] { return serve_until_signal(ks, host, port); }, spindle::Options{.workers = workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kv_server: %s\n", e.what());
    return 1;
  }
}
