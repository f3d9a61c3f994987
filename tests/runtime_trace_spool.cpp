// The execution trace's way to its file: a recording longer than a loop's ring (the
// ring wraps around many times while the writer spools it page by page) keeps every
// step, and a file that cannot be written is an error: stop_trace() throws
// std::system_error naming the path and the errno, and shutdown, which cannot throw,
// reports it (Report::Kind::trace_failed).
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <unistd.h>
#include <vector>

#include "support.hpp"

using namespace spindle;

namespace {

std::string trace_path(const char* what) {
  return (std::filesystem::temp_directory_path() /
          ("spindle_trace_spool_" + std::to_string(::getpid()) + "_" + what + ".json"))
      .string();
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::size_t count_of(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

// otherData's "dropped_events".
long long dropped_events(const std::string& doc) {
  const std::string key = "\"dropped_events\":";
  const std::size_t at = doc.rfind(key);
  return at == std::string::npos ? -1 : std::atoll(doc.c_str() + at + key.size());
}

bool has_full_device() { return ::access("/dev/full", W_OK) == 0; }

}  // namespace

TEST_CASE("trace: a recording many times longer than a loop's ring keeps every step, or counts what it dropped",
          "[trace]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::string path = trace_path("long");
  // Each yield is a step's end (suspended, 4 words) and a begin (2 or 3): 400k yields
  // are about 2.8M words, near three rings of 1M words on one loop.
  const int kTasks = 4, kYields = 100'000 / test::kScaleDown;
  {
    test::Checked h(n);
    Runtime& rt = h.runtime();
    rt.start_trace(path);
    std::vector<Task<>> ts;
    for (int i = 0; i < kTasks; ++i)
      ts.push_back(rt.spawn(TaskOptions{.name = "yielder"}, [] {
        for (int k = 0; k < kYields; ++k) spindle::yield();
      }));
    for (auto& t : ts) t.get();
    rt.stop_trace();
  }
  const std::string doc = slurp(path);
  std::filesystem::remove(path);
  REQUIRE(doc.size() > 2);
  CHECK(doc.compare(doc.size() - 3, 3, "}}\n") == 0);  // the document is complete
  const long long dropped = dropped_events(doc);
  REQUIRE(dropped >= 0);
  // Every yield ends one step and begins the next: kYields + 1 steps per task, each a
  // slice named after it; a step whose begin or end was dropped may be missing or cut.
  const std::size_t steps = count_of(doc, "\"name\":\"yielder\",\"cat\":\"step\"");
  const std::size_t expected = std::size_t(kTasks) * (kYields + 1);
  if (dropped == 0) {
    CHECK(steps == expected);
    CHECK(count_of(doc, "\"end\":\"unknown\"") == 0);
  } else {
    CHECK(steps <= expected);
    CHECK(steps + std::size_t(dropped) >= expected);
  }
  // Each task's last step returned, or was still on its way out when the stop came
  // (get() returns once the result is set, inside that step).
  if (dropped == 0) CHECK(count_of(doc, "\"end\":\"returned\"") + count_of(doc, "\"end\":\"stopped\"") >= kTasks);
}

TEST_CASE("trace: stop_trace() throws std::system_error naming the path when the file cannot be written", "[trace]") {
  if (!has_full_device()) {
    WARN("no /dev/full here: nothing to check");
    return;
  }
  const unsigned n = SPINDLE_WORKERS();
  test::Checked h(n);
  Runtime& rt = h.runtime();
  rt.start_trace("/dev/full");  // opens; every write fails with ENOSPC
  rt.block_on([] {
    std::vector<Task<>> ts;
    for (int i = 0; i < 100; ++i) ts.push_back(spawn([] { spindle::yield(); }));
    for (auto& t : ts) t.get();
  });
  try {
    rt.stop_trace();
    FAIL("no error");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::error_code(ENOSPC, std::generic_category()));
    CHECK(std::string(e.what()).find("/dev/full") != std::string::npos);
  }
  rt.stop_trace();  // stopped all the same: nothing left to stop, nothing thrown
  const std::string path = trace_path("after_error");
  rt.start_trace(path);  // and a new one may start
  rt.stop_trace();
  CHECK(dropped_events(slurp(path)) == 0);
  std::filesystem::remove(path);
}

TEST_CASE("trace: a trace that shutdown cannot write is reported (Report::Kind::trace_failed)", "[trace]") {
  if (!has_full_device()) {
    WARN("no /dev/full here: nothing to check");
    return;
  }
  const unsigned n = SPINDLE_WORKERS();
  test::Reports reports;
  {
    Options o = test::opts(n, &reports);
    o.trace = "/dev/full";
    Runtime rt(o);
    rt.block_on([] { spindle::yield(); });
  }  // shutdown finishes the trace: the write fails, and cannot throw from here
  const std::vector<Report> all = reports.all();
  REQUIRE(all.size() == 1);
  CHECK(all[0].kind == Report::Kind::trace_failed);
  CHECK(all[0].message.find("/dev/full") != std::string::npos);
  REQUIRE(all[0].error);
  try {
    std::rethrow_exception(all[0].error);
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::error_code(ENOSPC, std::generic_category()));
  }
}
