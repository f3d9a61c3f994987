// The execution trace's writer: one thread per recording that drains the loops' rings
// (each once it holds 1 MiB, looked at every few milliseconds) and the side channel into
// a spool file, and, when the recording stops, turns the spool into Chrome's trace
// event format (the JSON object form: {"traceEvents": [...], "otherData": {...}}), which
// Perfetto (ui.perfetto.dev) and chrome://tracing open.
//
// Why a spool: while the program runs, the writer only hands the rings' whole pages to
// the kernel (one spool file per loop, no formatting, no copy on our side), so it keeps
// up with the loops with little CPU, and the CPU that formatting JSON takes (several
// times the bytes) is spent once the recording is over, not beside the program being
// measured. The spools sit beside the output file (made and unlinked at once, so
// nothing is left behind) and grow with the recording, as the JSON file would; memory
// stays fixed.
//
// What it writes: one track (tid) per loop, named "loop <i>"; foreign threads get a
// track each. A task's step is a complete event ("X", cat "step") named after the task,
// with its task key, and how the step ended (the kind of wait and file:line, or that the
// task ended) in args. A wake-up is a flow: "s" at the waker (inside the waker's step,
// or inside a short "timer"/"fd"/"foreign" slice when no task woke it) and "f" (binding
// to the enclosing slice) at the start of the woken task's next step. Parks are "X"
// slices (cat "park") with their reason; steals, spawns, polls and timers fired are
// instant events; a step longer than Options::slow_step gets a "slow step" instant.
// Flows: a loop records a wake-up with the task it woke and a step's begin with its task,
// nothing joining the two (the waker never touches the woken task's frame). The writer
// replays every loop's ring and the side channel merged in time order, gives each
// wake-up the next flow id and keeps it for the task it woke; that task's next begin
// takes it. This holds because a wake-up's reading is never later than the begin of the
// step it readies (trace_ring.hpp, "Times"), and it stays right when an event is lost:
// a dropped wake-up leaves no flow, and a first step (a new task, perhaps at a dead
// one's address) or a spawn forgets what was kept for its key.
// Steps and parks are paired on their own loop's ring, which keeps them in order; a step
// or park still open when recording stops is closed at the stop, so a trace stopped by
// shutdown or mid-run is a complete, valid document. Dropped events are counted in
// otherData.
//
// Threads: the constructor and finish() run on the thread that starts or stops the
// trace; the rest runs on the writer's own thread; push_foreign on any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "observe/trace_ring.hpp"

namespace spindle::detail {

class TraceWriter {
 public:
  /// Opens (truncates) `path` and writes the header; throws RuntimeError if it cannot.
  /// `rings`: one per loop, owned by the loops; `baseline`: their drop counts now.
  TraceWriter(const std::string& path, std::vector<TraceRing*> rings, int64_t slow_step_ns);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  void start();
  /// Drains what is left, closes open slices, writes the footer, closes the file.
  /// Returns 0, or the errno of the first write that failed (spool or output file) with
  /// `what` naming the operation and the path.
  int finish(std::string& what) noexcept;
  /// An event from a thread that is not one of the loops (tid: its OS thread id).
  void push_foreign(uint32_t tid, const TraceEvent& e) noexcept;

 private:
  struct Track {
    uint32_t tid = 0;
    bool step_open = false;
    bool first = false;
    uint64_t task = 0, flow = 0;
    int64_t begin = 0;
    std::string name;
    bool suspended = false;
    TraceEvent suspend{};
    bool park_open = false;
    int64_t park_begin = 0, park_timeout = 0;
    uint8_t park_reason = 0;
    std::vector<std::pair<int64_t, const char*>> jobs;  // open jobs (foreign tracks)
  };
  struct Foreign {
    uint32_t tid;
    TraceEvent e;
  };

  void run();
  /// Copies what the rings holding 1 MiB or more (kSpoolAt) and the side channel hold
  /// to the spool.
  void spool();
  /// Reads the spools back and writes the JSON events: the loops' and the side
  /// channel's merged in time order.
  void replay();
  void handle(Track& tr, const TraceEvent& e);
  Track& foreign_track(uint32_t tid, const TraceEvent& first);
  void close_step(Track& tr, int64_t end, bool ended, bool cut);
  void close_park(Track& tr, int64_t end, uint32_t events, bool cut);
  void anchor(Track& tr, int64_t ts, const char* what, uint64_t flow, uint64_t task);
  /// An instant event on tr's track with one argument, key: v (hex: as "0x...").
  void instant(const Track& tr, int64_t ts, const char* name, const char* cat, const char* key, uint64_t v, bool hex);
  // JSON pieces
  void begin_event(const char* ph, const char* name, const char* cat, uint32_t tid, int64_t ts);
  void put_ts(int64_t ts);
  void put_str(const char* s);
  void put_str(const std::string& s) { put_str(s.c_str()); }
  void put_u(uint64_t v);
  void put_hex(uint64_t v);
  void flush_if(std::size_t at);

  std::FILE* out_ = nullptr;
  const std::string path_;
  // Each loop's ring goes to a spool file of its own, a copy of the ring's word stream
  // (trace_ring.hpp) taken in whole 4 KiB pages straight from the ring's memory: with
  // O_DIRECT where the file system allows it (no copy at all on our side, and none into
  // the page cache, which was half of what tracing cost a loop-heavy program), buffered
  // otherwise. File offset 0 holds ring position `base` (a page boundary); the session's
  // events start at `start`; `done` is the ring's tail. What is left after the last whole
  // page when the recording stops is read from the ring into `rest`.
  struct RingSpool {
    int fd = -1;      // the spool file, read back at the end
    int direct = -1;  // the same file opened with O_DIRECT, or -1
    uint64_t base = 0, start = 0, done = 0;
    bool failed = false;  // a write failed: the spool holds [start, done) no more
    uint64_t valid = 0;   // ring position up to which the file holds the stream
    std::vector<uint64_t> rest;
  };
  std::vector<RingSpool> spools_;
  std::FILE* foreign_ = nullptr;  // the side channel's events (Foreign records)
  uint64_t* page_ = nullptr;      // one aligned page: the first, partial page of a ring
  void spool_ring(std::size_t i, bool last);
  void write_at(RingSpool& s, const void* p, std::size_t n, uint64_t off);
  // The first error met while writing (errno, and what was being done); reported by
  // finish().
  int error_ = 0;
  std::string error_what_;
  void fail(int err, const char* what);
  std::string buf_;
  bool first_event_ = true;
  // The clocks at the start (trace_clock() and monotonic_ns()); t0_ is the trace's 0.
  const int64_t clock0_;
  const int64_t t0_;
  double ns_per_tick_ = 1.0;  // set at the end, from the clocks then
  int64_t to_ns(int64_t ticks) const noexcept { return t0_ + int64_t(double(ticks - clock0_) * ns_per_tick_); }
  const int64_t slow_step_ns_;
  const int pid_;
  std::vector<TraceRing*> rings_;
  std::vector<uint64_t> baseline_;  // the rings' drop counts at the start
  std::vector<Track> loops_;
  std::map<uint32_t, Track> foreign_tracks_;
  // Flows: each wake-up gets the next id, and the woken task's next step begin takes it
  // (see "Flows" above). pending_wakes_: task key -> the id of its wake-up whose begin
  // has not come yet.
  uint64_t flow_ids_ = 0;
  std::unordered_map<uint64_t, uint64_t> pending_wakes_;

  std::mutex mu_;  // guards side_, side_dropped_ and stop_
  std::condition_variable cv_;
  std::vector<Foreign> side_;
  uint64_t side_dropped_ = 0;
  bool stop_ = false;
  static constexpr std::size_t kSideCap = 1 << 16;
  std::thread thread_;
  bool finished_ = false;
};

}  // namespace spindle::detail
