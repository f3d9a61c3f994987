#include "observe/trace_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
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
// A ring is spooled once it holds this many words (1 MiB; the ring holds 8): a few large
// writes cost the writer, and the interrupts of their completion cost whatever they land
// on, less than many small ones, and a busy loop still fills it within a few periods.
constexpr uint64_t kSpoolAt = uint64_t(1) << 17;
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

namespace {

// A temporary file beside `path` (made and unlinked at once), or in the temporary
// directory if that directory allows no other file or `path` is no regular file (a
// device, a pipe); -1 with errno set if neither.
int spool_file(const std::string& path, bool beside) {
  std::string name = path + ".spool.XXXXXX";
  int fd = beside ? ::mkostemp(name.data(), O_CLOEXEC) : -1;
  if (fd >= 0) {
    ::unlink(name.c_str());
    return fd;
  }
  if (std::FILE* f = std::tmpfile()) {
    fd = ::fcntl(::fileno(f), F_DUPFD_CLOEXEC, 0);
    std::fclose(f);
    return fd;
  }
  return -1;
}

}  // namespace

TraceWriter::TraceWriter(const std::string& path, std::vector<TraceRing*> rings, int64_t slow_step_ns)
    : path_(path),
      clock0_(trace_clock()),
      t0_(monotonic_ns()),
      slow_step_ns_(slow_step_ns),
      pid_(int(::getpid())),
      rings_(std::move(rings)) {
  out_ = std::fopen(path.c_str(), "w");
  if (!out_) {
    const int e = errno;
    throw RuntimeError("start_trace: cannot open '" + path + "' for writing: " + std::strerror(e));
  }
  auto cleanup = [this] {
    for (RingSpool& s : spools_) {
      if (s.fd >= 0) ::close(s.fd);
      if (s.direct >= 0) ::close(s.direct);
    }
    spools_.clear();
    if (foreign_) std::fclose(foreign_);
    foreign_ = nullptr;
    std::free(page_);
    page_ = nullptr;
    std::fclose(out_);
    out_ = nullptr;
  };
  struct stat st;
  const bool beside = ::fstat(::fileno(out_), &st) == 0 && S_ISREG(st.st_mode);
  spools_.resize(rings_.size());
  int fd = -1;
  for (RingSpool& s : spools_) {
    if ((s.fd = spool_file(path, beside)) < 0) break;
    // The same (unlinked) file opened again for direct writes; buffered if refused
    // (tmpfs, say).
    s.direct = ::open(("/proc/self/fd/" + std::to_string(s.fd)).c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  }
  if (spools_.empty() || spools_.back().fd >= 0) fd = spool_file(path, beside);
  if (fd >= 0 && !(foreign_ = ::fdopen(fd, "w+"))) ::close(fd);
  if (!foreign_ || ::posix_memalign(reinterpret_cast<void**>(&page_), 4096, 4096) != 0) {
    const int e = errno;
    cleanup();
    throw RuntimeError("start_trace: cannot make a spool file beside '" + path + "': " + std::strerror(e));
  }
  for (std::size_t i = 0; i < rings_.size(); ++i) {
    baseline_.push_back(rings_[i]->dropped());
    RingSpool& s = spools_[i];
    s.start = s.done = s.valid = rings_[i]->reset();
    s.base = s.start / TraceRing::kPageWords * TraceRing::kPageWords;
  }
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

TraceWriter::~TraceWriter() {
  std::string what;
  finish(what);
}

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

void TraceWriter::fail(int err, const char* what) {
  if (error_) return;
  error_ = err ? err : EIO;
  error_what_ = std::string(what) + " '" + path_ + "'";
}

void TraceWriter::spool() {
  for (std::size_t i = 0; i < rings_.size(); ++i)
    if (rings_[i]->head() - spools_[i].done >= kSpoolAt) spool_ring(i, false);
  std::vector<Foreign> side;
  {
    std::lock_guard lk(mu_);
    side.swap(side_);
  }
  if (!side.empty() && std::fwrite(side.data(), sizeof(Foreign), side.size(), foreign_) != side.size())
    fail(errno, "spooling the trace of");
}

void TraceWriter::spool_ring(std::size_t i, bool last) {
  constexpr uint64_t kPage = TraceRing::kPageWords;
  TraceRing& r = *rings_[i];
  RingSpool& s = spools_[i];
  const uint64_t head = r.head();
  const uint64_t end = head / kPage * kPage;  // whole pages only
  uint64_t p = s.done;
  if (end > p) {
    if (p % kPage) {
      // The session began inside this page: its earlier words are not ours to read (the
      // loop may be rewriting them), so the page goes through page_, zeros first.
      const uint64_t from = p % kPage;
      std::memset(page_, 0, from * 8);
      std::memcpy(page_ + from, r.at(p), (kPage - from) * 8);
      write_at(s, page_, kPage * 8, (p - from - s.base) * 8);
      p += kPage - from;
    }
    while (p < end) {
      // A page never straddles the ring's end (its size is a whole number of pages).
      const uint64_t run = std::min(end - p, TraceRing::kWords - (p & TraceRing::kMask));
      write_at(s, r.at(p), run * 8, (p - s.base) * 8);
      p += run;
    }
    if (!s.failed) s.valid = end;
  }
  if (last && head > p) {
    try {
      for (; p < head; ++p) s.rest.push_back(*r.at(p));
    } catch (...) {
      s.rest.clear();  // no memory for the last few words: they are lost
      s.failed = true;
    }
  }
  s.done = std::max(p, s.done);
  r.release(s.done);
}

void TraceWriter::write_at(RingSpool& s, const void* p, std::size_t n, uint64_t off) {
  if (s.failed) return;
  const char* c = static_cast<const char*>(p);
  for (std::size_t done = 0; done < n;) {
    const int fd = s.direct >= 0 ? s.direct : s.fd;
    const ssize_t w = ::pwrite(fd, c + done, n - done, off_t(off + done));
    if (w > 0) {
      done += std::size_t(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EINVAL && s.direct >= 0) {
      ::close(s.direct);  // direct writes refused after all: buffered from now on
      s.direct = -1;
      continue;
    }
    fail(w < 0 ? errno : ENOSPC, "spooling the trace of");
    s.failed = true;
    return;
  }
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

namespace {

// A ring's word stream read back: the spool file's words, then the ones kept in memory.
class WordReader {
 public:
  WordReader(int fd, uint64_t off, uint64_t words, const std::vector<uint64_t>* rest)
      : fd_(fd), off_(off), left_(words), rest_(rest) {}
  bool next(uint64_t& w) {
    if (at_ == buf_.size() && !refill()) return false;
    w = buf_[at_++];
    return true;
  }
  bool failed() const noexcept { return failed_; }

 private:
  bool refill() {
    at_ = 0;
    buf_.clear();
    if (left_) {
      buf_.resize(std::size_t(std::min<uint64_t>(left_, 1 << 16)));
      const std::size_t bytes = buf_.size() * 8;
      std::size_t got = 0;
      while (got < bytes) {
        const ssize_t r = ::pread(fd_, reinterpret_cast<char*>(buf_.data()) + got, bytes - got, off_t(off_ + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += std::size_t(r);
      }
      if (got < bytes) {
        failed_ = true;
        buf_.clear();
        left_ = 0;
        return false;
      }
      off_ += bytes;
      left_ -= buf_.size();
      return true;
    }
    if (!rest_ || rest_->empty()) return false;
    buf_ = *rest_;
    rest_ = nullptr;
    return true;
  }
  int fd_;
  uint64_t off_, left_;
  const std::vector<uint64_t>* rest_;  // null once read
  bool failed_ = false;
  std::vector<uint64_t> buf_;
  std::size_t at_ = 0;
};

}  // namespace

namespace {

// One event of a loop's ring, decoded: up to three events at one time (a `next` event is
// a suspension, a step's end and a step's begin), and the task's name for a named begin.
struct RingEvent {
  int64_t ts = 0;    // ns
  bool gap = false;  // events were dropped just before this one
  uint32_t n = 0;    // events in e
  TraceEvent e[3];
  bool named = false;
  uint32_t name_len = 0;
  char name[kTraceNameMax];
  // Wake-ups go first among events at one time: the writer pairs a wake-up with the
  // woken task's next begin, which is never earlier.
  bool before(const RingEvent& o) const noexcept {
    return ts != o.ts ? ts < o.ts : (e[0].kind == TraceKind::wake && o.e[0].kind != TraceKind::wake);
  }
};

TraceEvent suspend_event(int64_t ts, uint64_t where, uint8_t kind) {
  const std::source_location loc = trace_where(where);
  TraceEvent su{};
  su.ts = ts;
  su.kind = TraceKind::suspend;
  su.a = reinterpret_cast<uintptr_t>(loc.file_name());
  su.b = reinterpret_cast<uintptr_t>(loc.function_name());
  su.u32 = loc.line();
  su.b8 = kind;
  return su;
}

// A loop's ring read back from its spool, an event at a time, with its times restored.
// Each event holds the clock's low 56 bits; the high bits come from the previous event's
// (a signed difference: a loop's events are in order, and the first may precede the
// start's reading by the few nanoseconds it took to write it).
class RingDecoder {
 public:
  RingDecoder(WordReader&& rd, int64_t clock0) : rd_(std::move(rd)), clock_(uint64_t(clock0)) {}
  bool failed() const noexcept { return rd_.failed(); }

  /// The next event into `ev` (task: the task of the step open on this loop, for the
  /// ends, which do not name it). False at the end, or where the words stop short (a
  /// write failed: what came before stands).
  template <class ToNs>
  bool next(RingEvent& ev, uint64_t task, ToNs to_ns) {
    constexpr uint64_t kLow = (uint64_t(1) << 56) - 1;
    ev.gap = false;
    ev.named = false;
    uint64_t w0;
    for (;;) {
      if (!rd_.next(w0)) return false;
      const auto kind = TraceKind(w0 & kTraceKindMask);
      // A spawn and a gap carry no time: a spawn's is the previous event's, a gap's the
      // next event's.
      if (kind != TraceKind::spawn && kind != TraceKind::gap) {
        const uint64_t d = ((w0 >> kTraceTsShift) - clock_) & kLow;
        clock_ += uint64_t(int64_t(d << 8) >> 8);
      }
      if (kind == TraceKind::gap) {
        ev.gap = true;
        continue;
      }
      ev.ts = to_ns(int64_t(clock_));
      ev.n = 0;
      return decode(ev, kind, unsigned(w0 >> kTraceFlagsShift) & 3, w0, task);
    }
  }

 private:
  TraceEvent& add(RingEvent& ev, TraceKind k) {
    TraceEvent& e = ev.e[ev.n++];
    e = TraceEvent{};
    e.ts = ev.ts;
    e.kind = k;
    return e;
  }
  bool decode(RingEvent& ev, TraceKind kind, unsigned flags, uint64_t w0, uint64_t task) {
    switch (kind) {
      case TraceKind::next:
      case TraceKind::next_returned:
      case TraceKind::next_wait:
      case TraceKind::next_timed_wait:
      case TraceKind::next_yield: {
        // The open step's end (after its suspension, if any), then a step's begin.
        if (kind >= TraceKind::next_wait) {
          uint64_t where = 0;
          if (!rd_.next(where)) return false;
          ev.e[ev.n++] = suspend_event(ev.ts, where, uint8_t(kind) - uint8_t(TraceKind::next_wait));
        }
        TraceEvent& end = add(ev, TraceKind::step_end);
        end.a = task;
        end.b8 = kind == TraceKind::next_returned ? 1 : 0;
        TraceEvent& b = add(ev, TraceKind::step_begin);
        b.b8 = flags & kBeginFirst ? 1 : 0;
        return rd_.next(b.a);
      }
      case TraceKind::step_begin:
      case TraceKind::name: {
        TraceEvent& b = add(ev, TraceKind::step_begin);
        b.b8 = flags & kBeginFirst ? 1 : 0;
        if (!rd_.next(b.a)) return false;
        if (kind == TraceKind::name) {
          uint64_t len = 0, w[kTraceNameMax / 8];
          if (!rd_.next(len) || len > kTraceNameMax) return false;
          for (uint64_t k = 0; k < (len + 7) / 8; ++k)
            if (!rd_.next(w[k])) return false;
          ev.named = true;
          ev.name_len = uint32_t(len);
          std::memcpy(ev.name, w, std::size_t(len));
        }
        return true;
      }
      case TraceKind::suspended: {
        uint64_t where = 0;
        if (!rd_.next(where)) return false;
        ev.e[ev.n++] = suspend_event(ev.ts, where, uint8_t(flags));
        add(ev, TraceKind::step_end).a = task;  // no drop since the open step's begin (a gap says): its end
        return true;
      }
      case TraceKind::step_end: {
        TraceEvent& e = add(ev, TraceKind::step_end);
        e.a = task;
        e.b8 = flags & kEndReturned ? 1 : 0;
        return true;
      }
      case TraceKind::wake: {
        TraceEvent& e = add(ev, TraceKind::wake);
        e.b8 = uint8_t(flags);
        return rd_.next(e.a);
      }
      case TraceKind::spawn:
        add(ev, TraceKind::spawn).a = w0 >> kTraceTsShift;
        return true;
      default: {
        TraceEvent& e = add(ev, kind);
        uint64_t x = 0;
        if (!rd_.next(e.a) || !rd_.next(x)) return false;
        e.u32 = uint32_t(x);
        e.b16 = uint16_t(x >> 32);
        e.b8 = uint8_t(x >> 48);
        return true;
      }
    }
  }

  WordReader rd_;
  uint64_t clock_;
};

}  // namespace

void TraceWriter::replay() {
  // Every loop's events and the side channel's, merged in time order, so that each
  // wake-up is handled before the begin it readied, wherever each was recorded.
  auto to_ns = [this](int64_t ticks) { return this->to_ns(ticks); };
  const std::size_t n = rings_.size();
  std::vector<RingDecoder> rings;
  rings.reserve(n);
  std::vector<RingEvent> ev(n);
  std::vector<char> has(n);
  for (std::size_t i = 0; i < n; ++i) {
    RingSpool& s = spools_[i];
    rings.emplace_back(WordReader(s.fd, (s.start - s.base) * 8, s.valid - s.start, s.failed ? nullptr : &s.rest),
                       clock0_);
    has[i] = rings[i].next(ev[i], loops_[i].task, to_ns);
  }
  std::fflush(foreign_);
  std::rewind(foreign_);
  Foreign f;
  bool foreign = std::fread(&f, sizeof f, 1, foreign_) == 1;
  for (;;) {
    std::size_t best = n;
    for (std::size_t i = 0; i < n; ++i)
      if (has[i] && (best == n || ev[i].before(ev[best]))) best = i;
    if (foreign) {
      const int64_t ts = to_ns(f.e.ts);
      if (best == n || ts < ev[best].ts || (ts == ev[best].ts && f.e.kind == TraceKind::wake)) {
        f.e.ts = ts;
        handle(foreign_track(f.tid, f.e), f.e);
        foreign = std::fread(&f, sizeof f, 1, foreign_) == 1;
        flush_if(kFlushAt);
        continue;
      }
    }
    if (best == n) break;
    Track& tr = loops_[best];
    const RingEvent& e = ev[best];
    if (e.gap) {
      // Events were dropped just before this one: whatever is open may have ended among
      // them. It is closed here, at this event's time, marked as cut.
      if (tr.step_open) close_step(tr, e.ts, false, true);
      if (tr.park_open) close_park(tr, e.ts, 0, true);
    }
    for (uint32_t k = 0; k < e.n; ++k) handle(tr, e.e[k]);
    if (e.named) tr.name.assign(e.name, e.name_len);
    has[best] = rings[best].next(ev[best], tr.task, to_ns);
    flush_if(kFlushAt);
  }
  for (const RingDecoder& r : rings)
    if (r.failed()) fail(EIO, "reading back the trace of");
  if (std::ferror(foreign_)) fail(errno, "reading back the trace of");
}

void TraceWriter::handle(Track& tr, const TraceEvent& e) {
  switch (e.kind) {
    case TraceKind::step_begin: {
      if (tr.step_open) close_step(tr, e.ts, false, true);
      tr.step_open = true;
      tr.first = e.b8 != 0;
      tr.task = e.a;
      tr.flow = 0;
      const auto it = pending_wakes_.find(e.a);
      if (it != pending_wakes_.end()) {
        if (!tr.first) tr.flow = it->second;
        pending_wakes_.erase(it);
      }
      tr.begin = e.ts;
      tr.name.clear();
      tr.suspended = false;
      break;
    }
    case TraceKind::name:  // decoded in replay_ring
    case TraceKind::gap:
    case TraceKind::suspended:
    case TraceKind::next:
    case TraceKind::next_returned:
    case TraceKind::next_wait:
    case TraceKind::next_timed_wait:
    case TraceKind::next_yield:
      break;
    case TraceKind::suspend:
      tr.suspended = true;
      tr.suspend = e;
      break;
    case TraceKind::step_end:
      if (tr.step_open && tr.task == e.a) close_step(tr, e.ts, e.b8 != 0, false);
      break;
    case TraceKind::wake: {
      const uint64_t flow = ++flow_ids_;
      pending_wakes_[e.a] = flow;
      if (WakeSource(e.b8) != WakeSource::task) {
        anchor(tr, e.ts, name_of(kWakeSources, e.b8), flow, e.a);
      } else if (tr.step_open) {
        begin_event("s", "wake", "wake", tr.tid, e.ts);
        buf_ += ",\"id\":";
        put_u(flow);
        buf_ += "}";
      } else {
        anchor(tr, e.ts, name_of(kWakeSources, e.b8), flow, 0);
      }
      break;
    }
    case TraceKind::spawn:
      pending_wakes_.erase(e.a);
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
  buf_ += ",\"dur\":0.001,\"args\":{";
  if (task) {  // (a task's wake-up outside a step of its own names none)
    buf_ += "\"woke\":";
    put_hex(task);
  }
  buf_ += "}}";
  begin_event("s", "wake", "wake", tr.tid, ts);
  buf_ += ",\"id\":";
  put_u(flow);
  buf_ += "}";
}

int TraceWriter::finish(std::string& what) noexcept {
  if (finished_) return 0;
  finished_ = true;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  try {
    for (std::size_t i = 0; i < rings_.size(); ++i) spool_ring(i, true);
    spool();  // the side channel
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
  for (RingSpool& s : spools_) {
    ::close(s.fd);
    if (s.direct >= 0) ::close(s.direct);
  }
  spools_.clear();
  std::fclose(foreign_);
  foreign_ = nullptr;
  std::free(page_);
  page_ = nullptr;
  flush_if(0);
  if (std::fflush(out_) != 0) fail(errno, "writing the trace to");
  if (std::fclose(out_) != 0) fail(errno, "closing the trace file");
  out_ = nullptr;
  if (error_) what = error_what_;
  return error_;
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
  // After a failed write the rest is dropped (the file is incomplete either way).
  if (!buf_.empty() && !error_ && std::fwrite(buf_.data(), 1, buf_.size(), out_) != buf_.size())
    fail(errno, "writing the trace to");
  buf_.clear();
}

}  // namespace spindle::detail
