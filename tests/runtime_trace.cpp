// The execution trace (Options::trace, Runtime::start_trace / stop_trace): programs
// whose schedule is known are traced, the JSON is parsed here, and the events are
// checked for what they mean: who woke whom (a flow from the waker's step to the woken
// task's next step, in time order), a steal naming the loop stolen from and a task that
// then ran on the thief, a timer's wake-up, a loop parked with nothing to do, every step
// closed and no two steps of one loop overlapping, the format's required fields, and a
// trace stopped by shutdown or mid-run that is still a complete document.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <variant>
#include <vector>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

// ---- A small JSON reader: enough for the trace format, strict about syntax. ----------

struct Json;
using JsonObject = std::map<std::string, Json>;
using JsonArray = std::vector<Json>;
struct Json {
  std::variant<std::nullptr_t, bool, double, std::string, JsonArray, JsonObject> v;
  bool is_obj() const { return std::holds_alternative<JsonObject>(v); }
  bool is_num() const { return std::holds_alternative<double>(v); }
  bool is_str() const { return std::holds_alternative<std::string>(v); }
  const JsonObject& obj() const { return std::get<JsonObject>(v); }
  const JsonArray& arr() const { return std::get<JsonArray>(v); }
  const std::string& str() const { return std::get<std::string>(v); }
  double num() const { return std::get<double>(v); }
  bool has(const std::string& k) const { return is_obj() && obj().count(k) != 0; }
  const Json& operator[](const std::string& k) const { return obj().at(k); }
};

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}
  Json document() {
    Json j = value();
    ws();
    if (i_ != s_.size()) fail("text after the document");
    return j;
  }

 private:
  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("JSON: ") + what + " at offset " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  char peek() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail("unexpected character");
    ++i_;
  }
  Json value() {
    const char c = peek();
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return Json{string()};
    if (s_.compare(i_, 4, "true") == 0) return i_ += 4, Json{true};
    if (s_.compare(i_, 5, "false") == 0) return i_ += 5, Json{false};
    if (s_.compare(i_, 4, "null") == 0) return i_ += 4, Json{nullptr};
    return number();
  }
  Json object() {
    expect('{');
    JsonObject o;
    if (peek() == '}') return ++i_, Json{std::move(o)};
    for (;;) {
      if (peek() != '"') fail("expected a key");
      std::string k = string();
      expect(':');
      o[k] = value();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      return Json{std::move(o)};
    }
  }
  Json array() {
    expect('[');
    JsonArray a;
    if (peek() == ']') return ++i_, Json{std::move(a)};
    for (;;) {
      a.push_back(value());
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect(']');
      return Json{std::move(a)};
    }
  }
  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u':
          if (i_ + 4 > s_.size()) fail("short \\u escape");
          out += char(std::stoi(s_.substr(i_, 4), nullptr, 16));  // the writer escapes controls only
          i_ += 4;
          break;
        default:
          fail("bad escape");
      }
    }
  }
  Json number() {
    const std::size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' || s_[i_] == 'e' ||
                              s_[i_] == 'E' || s_[i_] == '+' || s_[i_] == '-'))
      ++i_;
    if (i_ == start) fail("expected a value");
    return Json{std::stod(s_.substr(start, i_ - start))};
  }
  const std::string& s_;
  std::size_t i_ = 0;
};

// ---- The trace, read back --------------------------------------------------------------

struct Ev {
  std::string ph, name, cat;
  double ts = 0, dur = 0;
  long tid = 0;
  uint64_t id = 0;  // flows
  const Json* j = nullptr;
  std::string arg(const std::string& k) const {
    if (!j->has("args") || !(*j)["args"].has(k)) return "";
    const Json& a = (*j)["args"][k];
    if (a.is_str()) return a.str();
    if (a.is_num()) return std::to_string(static_cast<long long>(a.num()));
    return "";
  }
  double end() const { return ts + dur; }
};

struct Trace {
  Json doc;
  std::vector<Ev> ev;
  std::vector<const Ev*> of(const std::string& ph, const std::string& name = "") const {
    std::vector<const Ev*> out;
    for (auto& e : ev)
      if (e.ph == ph && (name.empty() || e.name == name)) out.push_back(&e);
    return out;
  }
  std::vector<const Ev*> steps(const std::string& name = "") const {
    std::vector<const Ev*> out;
    for (auto& e : ev)
      if (e.ph == "X" && e.cat == "step" && (name.empty() || e.name == name)) out.push_back(&e);
    std::sort(out.begin(), out.end(), [](const Ev* a, const Ev* b) { return a->ts < b->ts; });
    return out;
  }
  // The step on tid enclosing ts (its begin <= ts <= its end), if any.
  const Ev* step_at(long tid, double ts) const {
    for (auto& e : ev)
      if (e.ph == "X" && e.tid == tid && e.ts <= ts && ts <= e.end()) return &e;
    return nullptr;
  }
  // The wake-up flow that ends at step s (its "f" event), or null.
  const Ev* flow_into(const Ev* s) const {
    for (auto& e : ev)
      if (e.ph == "f" && e.tid == s->tid && e.ts == s->ts) return &e;
    return nullptr;
  }
  const Ev* flow(const std::string& ph, uint64_t id) const {
    for (auto& e : ev)
      if (e.ph == ph && e.id == id) return &e;
    return nullptr;
  }
  uint64_t dropped() const { return uint64_t(doc["otherData"]["dropped_events"].num()); }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Parses the file and checks what the format requires of every event, and that every
// step was closed and no two steps of one loop overlap.
Trace read_trace(const std::string& path) {
  Trace t;
  const std::string text = slurp(path);
  REQUIRE(!text.empty());
  t.doc = Parser(text).document();
  REQUIRE(t.doc.is_obj());
  REQUIRE(t.doc.has("traceEvents"));
  REQUIRE(t.doc.has("otherData"));
  REQUIRE(t.doc["otherData"].has("dropped_events"));
  for (const Json& j : t.doc["traceEvents"].arr()) {
    REQUIRE(j.is_obj());
    // Required of every event: its phase, name, process, thread and time.
    for (const char* k : {"ph", "name", "pid", "tid", "ts"}) {
      INFO("field " << k);
      REQUIRE(j.has(k));
    }
    REQUIRE(j["ts"].is_num());
    REQUIRE(j["ts"].num() >= 0);
    Ev e;
    e.j = &j;
    e.ph = j["ph"].str();
    e.name = j["name"].str();
    if (j.has("cat")) e.cat = j["cat"].str();
    e.ts = j["ts"].num();
    e.tid = long(j["tid"].num());
    REQUIRE((e.ph == "X" || e.ph == "i" || e.ph == "s" || e.ph == "f" || e.ph == "M"));
    if (e.ph == "X") {
      REQUIRE(j.has("dur"));  // a complete event: its start and its end
      e.dur = j["dur"].num();
      REQUIRE(e.dur >= 0);
    }
    if (e.ph == "s" || e.ph == "f") {
      REQUIRE(j.has("id"));
      e.id = uint64_t(j["id"].num());
    }
    if (e.ph == "f") REQUIRE(j["bp"].str() == "e");
    if (e.ph == "i") REQUIRE(j.has("s"));
    if (e.ph == "M") REQUIRE(j.has("args"));
    t.ev.push_back(e);
  }
  // Steps of one loop never overlap, and each says how it ended.
  std::map<long, std::vector<const Ev*>> by_tid;
  for (const Ev* s : t.steps()) by_tid[s->tid].push_back(s);
  for (auto& [tid, v] : by_tid) {
    for (std::size_t i = 1; i < v.size(); ++i) {
      INFO("loop " << tid << ": " << v[i - 1]->name << " then " << v[i]->name);
      CHECK(v[i]->ts >= v[i - 1]->end() - 0.0011);  // rounding to the nanosecond
    }
    for (const Ev* s : v) CHECK(!s->arg("end").empty());
  }
  // Every flow that ends has its start, no later than its end.
  for (const Ev* f : t.of("f")) {
    const Ev* s = t.flow("s", f->id);
    REQUIRE(s != nullptr);
    CHECK(s->ts <= f->ts);
  }
  return t;
}

// Runs body as the main task of a runtime over n loops (the test harness's, checked at
// its end) that records its trace into path.
template <class F>
void traced(unsigned n, const std::string& path, F&& body) {
  Options o = test::opts(n);
  o.trace = path;
  test::Checked h(o);
  h.block_on(std::forward<F>(body));
}

std::string trace_path(const char* what) {
  return (std::filesystem::temp_directory_path() /
          ("spindle_trace_" + std::to_string(::getpid()) + "_" + what + ".json"))
      .string();
}

// Busy on the CPU, without a suspension point, until `done` or 30 s.
void spin_until(const std::atomic<bool>& done) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!done.load() && std::chrono::steady_clock::now() < give_up) {
  }
}

}  // namespace

TEST_CASE("trace: a task woken by an Event set on another loop has a flow from the setter's step to its next step",
          "[trace]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::string path = trace_path("event");
  const int other = n > 1 ? 1 : 0;
  traced(n, path, [&] {
    Event ev;
    auto waiter = spawn(TaskOptions{.name = "waiter", .pinned = true, .loop = 0}, [&] { ev.wait(); });
    auto setter = spawn(TaskOptions{.name = "setter", .pinned = true, .loop = other}, [&] {
      test::until_suspended(waiter);
      ev.set();
    });
    waiter.get();
    setter.get();
  });
  const Trace t = read_trace(path);
  CHECK(t.dropped() == 0);
  const auto w = t.steps("waiter");
  REQUIRE(w.size() == 2);  // up to the wait, and after it
  CHECK(w[0]->tid == 0);
  CHECK(w[1]->tid == 0);
  CHECK((*w[0]->j)["args"].has("first"));
  CHECK(w[0]->arg("end") == "suspended");
  CHECK(w[0]->arg("wait") == "wait");
  CHECK(w[0]->arg("at").find("runtime_trace.cpp:") != std::string::npos);
  CHECK(w[1]->arg("end") == "returned");
  // The arrow: it starts inside a step of the setter, on the setter's loop, and ends at
  // the waiter's second step, after it.
  const Ev* f = t.flow_into(w[1]);
  REQUIRE(f != nullptr);
  CHECK(f->tid == 0);
  const Ev* s = t.flow("s", f->id);
  REQUIRE(s != nullptr);
  CHECK(s->tid == (n > 1 ? 1 : 0));
  const Ev* waker = t.step_at(s->tid, s->ts);
  REQUIRE(waker != nullptr);
  CHECK(waker->name == "setter");
  CHECK(s->ts >= w[0]->end());
  CHECK(s->ts <= w[1]->ts);
  std::filesystem::remove(path);
}

TEST_CASE("trace: a stolen task shows a steal naming the loop it came from, and runs on the thief", "[trace]") {
  const unsigned n = SPINDLE_WORKERS();
  if (n < 2) return;  // a steal needs two loops
  const std::string path = trace_path("steal");
  traced(n, path, [&] {
    std::atomic<bool> ran{false};
    std::vector<Task<>> ts;
    // The main task keeps its loop busy without suspending: the only way these tasks
    // run is on another loop that stole them.
    for (int i = 0; i < 8; ++i) ts.push_back(spawn(TaskOptions{.name = "stealme"}, [&] { ran = true; }));
    spin_until(ran);
    CHECK(ran.load());
    for (auto& t : ts) t.get();
  });
  const Trace t = read_trace(path);
  const auto main_steps = t.steps("main");
  REQUIRE(!main_steps.empty());
  const long home = main_steps.front()->tid;
  bool stolen_from_home = false;
  for (const Ev* e : t.of("i", "steal")) {
    CHECK(e->arg("from") != std::to_string(e->tid));
    CHECK(std::stol(e->arg("tasks")) >= 1);
    if (std::stol(e->arg("from")) == home) stolen_from_home = true;
  }
  CHECK(stolen_from_home);
  // The spawns were on the main task's loop; the first "stealme" step ran elsewhere.
  std::size_t spawns_at_home = 0;
  for (const Ev* e : t.of("i", "spawn")) spawns_at_home += e->tid == home;
  CHECK(spawns_at_home >= 8);
  const auto stolen = t.steps("stealme");
  REQUIRE(stolen.size() == 8);
  CHECK(stolen.front()->tid != home);
  std::filesystem::remove(path);
}

TEST_CASE("trace: a timer's wake-up is a flow from a timer slice to the sleeper's next step; idle loops park",
          "[trace]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::string path = trace_path("timer");
  traced(n, path, [&] { spawn(TaskOptions{.name = "sleeper"}, [] { spindle::sleep(5ms); }).get(); });
  const Trace t = read_trace(path);
  const auto s = t.steps("sleeper");
  REQUIRE(s.size() == 2);
  CHECK(s[0]->arg("wait") == "timed wait");
  const Ev* f = t.flow_into(s[1]);
  REQUIRE(f != nullptr);
  const Ev* start = t.flow("s", f->id);
  REQUIRE(start != nullptr);
  CHECK(start->tid == s[0]->tid);  // the timer lives on the loop where the sleeper waited
  // The slice the arrow starts in: the timer's own.
  const Ev* timer_slice = nullptr;
  for (const Ev* e : t.of("X", "timer"))
    if (e->tid == start->tid && e->ts == start->ts) timer_slice = e;
  REQUIRE(timer_slice != nullptr);
  CHECK(start->ts >= s[0]->end());
  CHECK(!t.of("i", "timer fired").empty());
  // While the sleeper waits, its loop parks until the timer (5 ms is far longer than a
  // search), and with more loops the others park with nothing to do.
  bool timer_park = false, idle_park = false;
  for (const Ev* p : t.of("X", "park")) {
    CHECK(!p->arg("reason").empty());
    timer_park = timer_park || p->arg("reason").find("timer") != std::string::npos;
    idle_park = idle_park || p->arg("reason") == "no work";
  }
  CHECK(timer_park);
  if (n > 1) CHECK(idle_park);
  std::filesystem::remove(path);
}

TEST_CASE(
    "trace: a future completed by a foreign thread wakes its waiter with a flow from that thread's track; "
    "a to_thread job is a slice on its pool thread",
    "[trace]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::string path = trace_path("foreign");
  traced(n, path, [&] {
    Future<int> fut;
    auto waiter = spawn(TaskOptions{.name = "fwaiter"}, [&] { return fut.get(); });
    test::until_suspended(waiter);
    std::thread th([&] { fut.set_result(7); });
    CHECK(waiter.get() == 7);
    th.join();
    CHECK(to_thread([] { return 3; }) == 3);  // a blocking-pool job
  });
  const Trace t = read_trace(path);
  const auto s = t.steps("fwaiter");
  REQUIRE(s.size() == 2);
  const Ev* f = t.flow_into(s[1]);
  REQUIRE(f != nullptr);
  const Ev* start = t.flow("s", f->id);
  REQUIRE(start != nullptr);
  CHECK(start->tid >= 100000);  // a foreign thread's track
  CHECK(!t.of("X", "foreign thread").empty());
  const auto jobs = t.of("X", "to_thread");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0]->tid >= 100000);
  CHECK(jobs[0]->cat == "job");
  std::filesystem::remove(path);
}

TEST_CASE("trace: stopped mid-run, then by shutdown with tasks still running, both files are complete", "[trace]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::string mid = trace_path("mid"), down = trace_path("down");
  {
    test::Checked h(n, test::Allow{.live_tasks = true});
    Runtime& rt = h.runtime();
    std::atomic<bool> stop{false};
    std::vector<Task<>> ts;
    rt.start_trace(mid);
    for (int i = 0; i < 4; ++i)
      ts.push_back(rt.spawn(TaskOptions{.name = "busy"}, [&] {
        while (!stop.load()) spindle::yield();
      }));
    ts.push_back(rt.spawn(TaskOptions{.name = "forever"}, [] { test::forever(); }));
    while (!test::has_suspended(ts.back())) std::this_thread::yield();
    rt.stop_trace();  // mid-run: steps are still being taken
    rt.stop_trace();  // nothing to stop
    rt.start_trace(down);
    stop = true;
    // Shutdown (the harness's) cancels "forever" and stops the trace.
  }
  for (const std::string& p : {mid, down}) {
    const Trace t = read_trace(p);
    CHECK(!t.steps().empty());
    std::filesystem::remove(p);
  }
}

TEST_CASE("trace: threads outside the runtime start and stop traces while it shuts down", "[trace]") {
  const unsigned n = SPINDLE_WORKERS();
  constexpr int kThreads = 3, kRounds = 40;
  std::vector<std::vector<std::string>> written(kThreads);
  std::atomic<int> odd_errors{0};  // checked on this thread: assertions are not thread-safe
  {
    test::Checked h(n, test::Allow{.live_tasks = true});
    Runtime& rt = h.runtime();
    std::atomic<bool> stop{false};
    std::vector<Task<>> ts;
    for (int i = 0; i < 2; ++i)
      ts.push_back(rt.spawn(TaskOptions{.name = "busy"}, [&] {
        while (!stop.load()) spindle::yield();
      }));
    std::atomic<int> started{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < kThreads; ++k)
      threads.emplace_back([&, k] {
        started.fetch_add(1);
        for (int i = 0; i < kRounds; ++i) {
          const std::string p = trace_path(("race" + std::to_string(k) + "_" + std::to_string(i)).c_str());
          try {
            rt.start_trace(p);
          } catch (const RuntimeError& e) {
            const std::string what = e.what();
            std::filesystem::remove(p);
            if (what.find("shut down") != std::string::npos) return;
            if (what.find("already") == std::string::npos) odd_errors.fetch_add(1);
            continue;
          }
          // Another thread's stop, or shutdown's, may end this trace first: the file is
          // complete either way.
          written[k].push_back(p);
          rt.stop_trace();
        }
      });
    while (started.load() < kThreads) std::this_thread::yield();
    stop = true;
    rt.shutdown();
    for (std::thread& t : threads) t.join();
  }
  CHECK(odd_errors.load() == 0);
  for (const auto& paths : written)
    for (const std::string& p : paths) {
      read_trace(p);  // a complete document (read_trace fails the test otherwise)
      std::filesystem::remove(p);
    }
}

TEST_CASE("trace: a second start, a bad path and a shut-down runtime are errors that name the problem", "[trace]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::string path = trace_path("errors");
  {
    test::Checked h(n);
    Runtime& rt = h.runtime();
    try {
      rt.start_trace("/nonexistent-dir/spindle/trace.json");
      FAIL("no error");
    } catch (const RuntimeError& e) {
      CHECK(std::string(e.what()).find("/nonexistent-dir/spindle/trace.json") != std::string::npos);
      CHECK(std::string(e.what()).find("No such file") != std::string::npos);
    }
    rt.start_trace(path);
    try {
      rt.start_trace(path);
      FAIL("no error");
    } catch (const RuntimeError& e) {
      CHECK(std::string(e.what()).find("already") != std::string::npos);
    }
    rt.shutdown();
    try {
      rt.start_trace(path);
      FAIL("no error");
    } catch (const RuntimeError& e) {
      CHECK(std::string(e.what()).find("shut down") != std::string::npos);
    }
  }
  read_trace(path);
  std::filesystem::remove(path);
  // Options::trace with a bad path: the constructor throws.
  Options o = test::opts(n);
  o.trace = "/nonexistent-dir/trace.json";
  CHECK_THROWS_AS(Runtime(o), RuntimeError);
}
