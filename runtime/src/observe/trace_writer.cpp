#include "observe/trace_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstdlib>
#include <charconv>
#include <chrono>
#include <cstring>

#include <spindle/detail/deadline.hpp>
#include <spindle/errors.hpp>

namespace spindle::detail {

namespace {

constexpr std::chrono::milliseconds kPeriod{2};
constexpr std::size_t kFlushAt = 1 << 20;

// Names of WakeSource and SuspendKind values, in their order.
constexpr const char* kWakeSources[] = {"task", "timer", "fd", "foreign thread"};
constexpr const char* kSuspendKinds[] = {"wait", "timed wait", "yield"};
template <std::size_t N>
const char* name_of(const char* const (&names)[N], uint8_t v) {
  return v < N ? names[v] : "?";
}

std::string park_reason(uint8_t bits) {
  if (bits == 0) return "no work";
  std::string r;
  auto add = [&r](const char* s) {
    if (!r.empty()) r += '+';
    r += s;
  };
  if (bits & kParkTimer) add("timer");
  if (bits & kParkFd) add("fd");
  if (bits & kParkIoWatch) add("io watch");
  return r;
}

}  // namespace

TraceWriter::TraceWriter(const std::string& path, std::vector<TraceRing*> rings, int64_t slow_step_ns)
    : clock0_(trace_clock()),
      t0_(monotonic_ns()),
      slow_step_ns_(slow_step_ns),
      pid_(int(::getpid())),
      rings_(std::move(rings)) {
  out_ = std::fopen(path.c_str(), "w");
  if (!out_) {
    const int e = errno;
    throw RuntimeError("start_trace: cannot open '" + path + "' for writing: " + std::strerror(e));
  }
  std::string spool = path + ".spool.XXXXXX";
  const int fd = ::mkstemp(spool.data());
  if (fd >= 0) {
    ::unlink(spool.c_str());
    spool_ = ::fdopen(fd, "w+");
    if (!spool_) ::close(fd);
  }
  if (!spool_) spool_ = std::tmpfile();  // the output's directory allows no other file
  if (spool_ && ::posix_memalign(reinterpret_cast<void**>(&direct_buf_), kPage, kDirectCap) == 0) {
    // The same (unlinked) file opened again for direct writes; buffered if refused
    // (tmpfs, say).
    const std::string self = "/proc/self/fd/" + std::to_string(::fileno(spool_));
    direct_fd_ = ::open(self.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (direct_fd_ < 0) {
      std::free(direct_buf_);
      direct_buf_ = nullptr;
    }
  }
  if (!spool_) {
    const int e = errno;
    std::fclose(out_);
    throw RuntimeError("start_trace: cannot make a spool file beside '" + path + "': " + std::strerror(e));
  }
  for (TraceRing* r : rings_) baseline_.push_back(r->reset());
  loops_.resize(rings_.size());
  buf_.reserve(kFlushAt + 4096);
  buf_ += "{\"traceEvents\":[\n";
  begin_event("M", "process_name", nullptr, 0, 0);
  buf_ += ",\"args\":{\"name\":\"spindle\"}}";
  for (std::size_t i = 0; i < loops_.size(); ++i) {
    loops_[i].tid = uint32_t(i);
    begin_event("M", "thread_name", nullptr, uint32_t(i), 0);
    buf_ += ",\"args\":{\"name\":\"loop ";
    put_u(i);
    buf_ += "\"}}";
    begin_event("M", "thread_sort_index", nullptr, uint32_t(i), 0);
    buf_ += ",\"args\":{\"sort_index\":";
    put_u(i);
    buf_ += "}}";
  }
}

TraceWriter::~TraceWriter() { finish(); }

void TraceWriter::start() {
  thread_ = std::thread([this] { run(); });
}

void TraceWriter::push_foreign(uint32_t tid, const TraceEvent& e) noexcept {
  std::lock_guard lk(mu_);
  if (side_.size() >= kSideCap) {
    ++side_dropped_;
    return;
  }
  try {
    side_.push_back({tid, e});
  } catch (...) {
    ++side_dropped_;
  }
}

void TraceWriter::run() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, kPeriod);
    lk.unlock();
    spool();
    lk.lock();
  }
}

namespace {
struct Block {
  uint32_t track;  // a loop's index, or kForeignTrack | the OS thread id
  uint32_t count;  // events that follow
};
constexpr uint32_t kForeignTrack = 0x80000000u;
}  // namespace

void TraceWriter::spool() {
  stage_.clear();
  auto add = [this](uint32_t track, const TraceEvent* e, uint32_t n) {
    const Block b{track, n};
    const char* bp = reinterpret_cast<const char*>(&b);
    stage_.insert(stage_.end(), bp, bp + sizeof b);
    const char* ep = reinterpret_cast<const char*>(e);
    stage_.insert(stage_.end(), ep, ep + n * sizeof(TraceEvent));
  };
  // The loops' events go to the spool straight from their rings: a block header, then
  // each contiguous run.
  for (std::size_t i = 0; i < rings_.size(); ++i) {
    rings_[i]->drain([&](const TraceEvent* e, std::size_t n) {
      const Block b{uint32_t(i), uint32_t(n)};
      spool_bytes(&b, sizeof b);
      spool_bytes(e, n * sizeof *e);
    });
  }
  try {
    std::vector<Foreign> side;
    {
      std::lock_guard lk(mu_);
      side.swap(side_);
    }
    for (const Foreign& f : side) add(kForeignTrack | f.tid, &f.e, 1);
  } catch (...) {
    // No memory to stage them: what was drained is lost, and counted.
    std::lock_guard lk(mu_);
    ++side_dropped_;
  }
  if (!stage_.empty()) spool_bytes(stage_.data(), stage_.size());
  spool_flush(false);
}

void TraceWriter::spool_bytes(const void* p, std::size_t n) {
  if (direct_fd_ < 0) {
    std::fwrite(p, 1, n, spool_);
    return;
  }
  const char* c = static_cast<const char*>(p);
  while (n) {
    if (direct_used_ == kDirectCap) spool_flush(false);
    const std::size_t k = std::min(n, kDirectCap - direct_used_);
    std::memcpy(direct_buf_ + direct_used_, c, k);
    direct_used_ += k, c += k, n -= k;
  }
}

void TraceWriter::spool_flush(bool last) {
  if (direct_fd_ < 0) return;
  // Whole pages only; the rest waits for more, or is padded at the last flush.
  std::size_t len = last ? (direct_used_ + kPage - 1) / kPage * kPage : direct_used_ / kPage * kPage;
  if (len == 0) return;
  if (last) std::memset(direct_buf_ + direct_used_, 0, len - direct_used_);
  const std::size_t valid = std::min(len, direct_used_);
  for (std::size_t done = 0; done < len;) {
    const ssize_t w = ::pwrite(direct_fd_, direct_buf_ + done, len - done, off_t(direct_off_ + done));
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      break;  // the disk is full: what is spooled so far is kept
    }
    done += std::size_t(w);
  }
  direct_off_ += len;
  direct_valid_ += valid;
  std::memmove(direct_buf_, direct_buf_ + valid, direct_used_ - valid);
  direct_used_ -= valid;
}

TraceWriter::Track& TraceWriter::foreign_track(uint32_t tid, const TraceEvent& first) {
  auto [it, fresh] = foreign_tracks_.try_emplace(tid);
  Track& tr = it->second;
  if (fresh) {
    // Foreign tracks are numbered after the loops' by OS thread id, never colliding.
    tr.tid = 100000 + tid;
    begin_event("M", "thread_name", nullptr, tr.tid, t0_);
    buf_ += ",\"args\":{\"name\":\"";
    buf_ += first.kind == TraceKind::job_begin ? "pool thread " : "thread ";
    put_u(tid);
    buf_ += "\"}}";
  }
  return tr;
}

void TraceWriter::replay() {
  spool_flush(true);
  std::fflush(spool_);
  std::rewind(spool_);
  std::vector<TraceEvent> evs;
  Block b;
  uint64_t read = 0;
  while ((direct_fd_ < 0 || read < direct_valid_) && std::fread(&b, sizeof b, 1, spool_) == 1) {
    read += sizeof b + uint64_t(b.count) * sizeof(TraceEvent);
    evs.resize(b.count);
    if (std::fread(evs.data(), sizeof(TraceEvent), b.count, spool_) != b.count) break;
    for (TraceEvent& e : evs) {
      e.ts = to_ns(e.ts);
      Track& tr = (b.track & kForeignTrack) ? foreign_track(b.track & ~kForeignTrack, e) : loops_[b.track];
      handle(tr, e);
    }
    flush_if(kFlushAt);
  }
  std::fclose(spool_);
  spool_ = nullptr;
}

void TraceWriter::handle(Track& tr, const TraceEvent& e) {
  switch (e.kind) {
    case TraceKind::step_begin:
      if (tr.step_open) close_step(tr, e.ts, false, true);
      tr.step_open = true;
      tr.first = e.b8 != 0;
      tr.task = e.a;
      tr.flow = e.b;
      tr.begin = e.ts;
      tr.name.clear();
      tr.suspended = false;
      break;
    case TraceKind::name: {
      if (!tr.step_open) break;
      if (e.b16 == 0) tr.name.clear();
      char chunk[16];
      std::memcpy(chunk, &e.a, 8);
      std::memcpy(chunk + 8, &e.b, 8);
      const std::size_t left = e.u32 > tr.name.size() ? e.u32 - tr.name.size() : 0;
      tr.name.append(chunk, left < 16 ? left : 16);
      break;
    }
    case TraceKind::suspend:
      tr.suspended = true;
      tr.suspend = e;
      break;
    case TraceKind::step_end:
      if (tr.step_open && tr.task == e.a) close_step(tr, e.ts, e.b8 != 0, false);
      break;
    case TraceKind::wake:
      if (WakeSource(e.b8) == WakeSource::task && tr.step_open) {
        begin_event("s", "wake", "wake", tr.tid, e.ts);
        buf_ += ",\"id\":";
        put_u(e.b);
        buf_ += "}";
      } else {
        anchor(tr, e.ts, name_of(kWakeSources, e.b8), e.b, e.a);
      }
      break;
    case TraceKind::spawn:
      instant(tr, e.ts, "spawn", "spawn", "task", e.a, true);
      break;
    case TraceKind::steal:
      begin_event("i", e.b8 ? "io steal" : "steal", "steal", tr.tid, e.ts);
      buf_ += ",\"s\":\"t\",\"args\":{\"from\":";
      put_u(e.b16);
      buf_ += e.b8 ? ",\"events\":" : ",\"tasks\":";
      put_u(e.u32);
      buf_ += "}}";
      break;
    case TraceKind::park_begin:
      if (tr.park_open) close_park(tr, e.ts, 0, true);
      tr.park_open = true;
      tr.park_begin = e.ts;
      tr.park_timeout = int64_t(e.a);
      tr.park_reason = e.b8;
      break;
    case TraceKind::park_end:
      if (tr.park_open) close_park(tr, e.ts, e.u32, false);
      break;
    case TraceKind::poll:
      instant(tr, e.ts, "poll", "io", "events", e.u32, false);
      break;
    case TraceKind::timer_fired:
      instant(tr, e.ts, "timer fired", "timer", "task", e.a, true);
      break;
    case TraceKind::job_begin:
      try {
        tr.jobs.emplace_back(e.ts, reinterpret_cast<const char*>(e.a));
      } catch (...) {
      }
      break;
    case TraceKind::job_end:
      if (!tr.jobs.empty()) {
        auto [b, what] = tr.jobs.back();
        tr.jobs.pop_back();
        begin_event("X", what, "job", tr.tid, b);
        buf_ += ",\"dur\":";
        put_ts(e.ts - b + t0_);
        buf_ += "}";
      }
      break;
  }
}

void TraceWriter::close_step(Track& tr, int64_t end, bool ended, bool cut) {
  tr.step_open = false;
  const std::string name = !tr.name.empty() ? tr.name : std::string("task");
  begin_event("X", name.c_str(), "step", tr.tid, tr.begin);
  buf_ += ",\"dur\":";
  put_ts(end - tr.begin + t0_);
  buf_ += ",\"args\":{\"task\":";
  put_hex(tr.task);
  if (tr.first) buf_ += ",\"first\":true";
  if (ended) {
    buf_ += ",\"end\":\"returned\"";
  } else if (tr.suspended) {
    buf_ += ",\"end\":\"suspended\",\"wait\":";
    put_str(name_of(kSuspendKinds, tr.suspend.b8));
    const char* file = reinterpret_cast<const char*>(tr.suspend.a);
    const char* fn = reinterpret_cast<const char*>(tr.suspend.b);
    std::string at = file ? file : "";
    at += ':';
    at += std::to_string(tr.suspend.u32);
    buf_ += ",\"at\":";
    put_str(at);
    if (fn && *fn) {
      buf_ += ",\"function\":";
      put_str(fn);
    }
  } else if (cut) {
    buf_ += ",\"end\":\"unknown\"";  // its end was dropped
  } else {
    buf_ += ",\"end\":\"stopped\"";  // still running when the trace stopped
  }
  buf_ += "}}";
  if (tr.flow) {
    begin_event("f", "wake", "wake", tr.tid, tr.begin);
    buf_ += ",\"bp\":\"e\",\"id\":";
    put_u(tr.flow);
    buf_ += "}";
  }
  if (slow_step_ns_ > 0 && end - tr.begin >= slow_step_ns_) {
    begin_event("i", "slow step", "step", tr.tid, end);
    buf_ += ",\"s\":\"t\",\"args\":{\"task\":";
    put_str(name);
    buf_ += ",\"ms\":";
    put_u(uint64_t((end - tr.begin) / 1'000'000));
    buf_ += "}}";
  }
  tr.suspended = false;
}

void TraceWriter::close_park(Track& tr, int64_t end, uint32_t events, bool cut) {
  tr.park_open = false;
  begin_event("X", "park", "park", tr.tid, tr.park_begin);
  buf_ += ",\"dur\":";
  put_ts(end - tr.park_begin + t0_);
  buf_ += ",\"args\":{\"reason\":";
  put_str(park_reason(tr.park_reason));
  if (tr.park_timeout >= 0) {
    buf_ += ",\"timeout_us\":";
    put_u(uint64_t(tr.park_timeout / 1000));
  }
  buf_ += ",\"events\":";
  put_u(events);
  if (cut) buf_ += ",\"cut\":true";
  buf_ += "}}";
}

void TraceWriter::anchor(Track& tr, int64_t ts, const char* what, uint64_t flow, uint64_t task) {
  // A flow starts inside a slice: a short one stands for the timer, fd or thread.
  begin_event("X", what, "waker", tr.tid, ts);
  buf_ += ",\"dur\":0.001,\"args\":{\"woke\":";
  put_hex(task);
  buf_ += "}}";
  begin_event("s", "wake", "wake", tr.tid, ts);
  buf_ += ",\"id\":";
  put_u(flow);
  buf_ += "}";
}

void TraceWriter::finish() noexcept {
  if (finished_) return;
  finished_ = true;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  try {
    spool();
    // The clock's rate, from the two readings of both clocks (start and now).
    const int64_t clock1 = trace_clock(), now = monotonic_ns();
    if (clock1 != clock0_) ns_per_tick_ = double(now - t0_) / double(clock1 - clock0_);
    replay();
    for (Track& tr : loops_) {
      if (tr.step_open) close_step(tr, now, false, false);
      if (tr.park_open) close_park(tr, now, 0, true);
    }
    for (auto& [tid, tr] : foreign_tracks_) {
      while (!tr.jobs.empty()) {
        TraceEvent e{};
        e.ts = now;
        e.kind = TraceKind::job_end;
        handle(tr, e);
      }
    }
    uint64_t total = side_dropped_;
    buf_ += "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{\"format\":\"spindle trace 1\",\"loops\":";
    put_u(rings_.size());
    buf_ += ",\"dropped_per_loop\":[";
    for (std::size_t i = 0; i < rings_.size(); ++i) {
      const uint64_t d = rings_[i]->dropped() - baseline_[i];
      total += d;
      if (i) buf_ += ',';
      put_u(d);
    }
    buf_ += "],\"dropped_foreign\":";
    put_u(side_dropped_);
    buf_ += ",\"dropped_events\":";
    put_u(total);
    buf_ += "}}\n";
  } catch (...) {
    buf_ += "\n]}\n";  // no memory for the rest: still a valid document
  }
  if (spool_) std::fclose(spool_);
  spool_ = nullptr;
  if (direct_fd_ >= 0) ::close(direct_fd_);
  direct_fd_ = -1;
  std::free(direct_buf_);
  direct_buf_ = nullptr;
  flush_if(0);
  std::fclose(out_);
  out_ = nullptr;
}

void TraceWriter::instant(const Track& tr, int64_t ts, const char* name, const char* cat, const char* key, uint64_t v,
                          bool hex) {
  begin_event("i", name, cat, tr.tid, ts);
  buf_ += ",\"s\":\"t\",\"args\":{\"";
  buf_ += key;
  buf_ += "\":";
  hex ? put_hex(v) : put_u(v);
  buf_ += "}}";
}

void TraceWriter::begin_event(const char* ph, const char* name, const char* cat, uint32_t tid, int64_t ts) {
  if (!first_event_) buf_ += ",\n";
  first_event_ = false;
  buf_ += "{\"ph\":\"";
  buf_ += ph;
  buf_ += "\",\"name\":";
  put_str(name);
  if (cat) {
    buf_ += ",\"cat\":\"";
    buf_ += cat;
    buf_ += '"';
  }
  buf_ += ",\"pid\":";
  put_u(uint64_t(pid_));
  buf_ += ",\"tid\":";
  put_u(tid);
  buf_ += ",\"ts\":";
  put_ts(ts);
}

void TraceWriter::put_ts(int64_t ts) {
  // Microseconds with three decimals (nanosecond resolution), from the trace's start.
  int64_t d = ts - t0_;
  if (d < 0) d = 0;
  put_u(uint64_t(d / 1000));
  char frac[4] = {'.', char('0' + (d / 100) % 10), char('0' + (d / 10) % 10), char('0' + d % 10)};
  buf_.append(frac, 4);
}

void TraceWriter::put_u(uint64_t v) {
  char tmp[24];
  auto r = std::to_chars(tmp, tmp + sizeof tmp, v);
  buf_.append(tmp, r.ptr);
}

void TraceWriter::put_hex(uint64_t v) {
  char tmp[24];
  auto r = std::to_chars(tmp, tmp + sizeof tmp, v, 16);
  buf_ += "\"0x";
  buf_.append(tmp, r.ptr);
  buf_ += '"';
}

void TraceWriter::put_str(const char* s) {
  buf_ += '"';
  for (; *s; ++s) {
    const unsigned char c = static_cast<unsigned char>(*s);
    if (c == '"' || c == '\\') {
      buf_ += '\\';
      buf_ += char(c);
    } else if (c < 0x20) {
      char tmp[8];
      std::snprintf(tmp, sizeof tmp, "\\u%04x", c);
      buf_ += tmp;
    } else {
      buf_ += char(c);
    }
  }
  buf_ += '"';
}

void TraceWriter::flush_if(std::size_t at) {
  if (buf_.size() < at || !out_) return;
  if (!buf_.empty()) std::fwrite(buf_.data(), 1, buf_.size(), out_);
  buf_.clear();
  if (at == 0) std::fflush(out_);
}

}  // namespace spindle::detail
