// ProcessPool against functions that misbehave around their worker process: they start
// programs (which must inherit neither the pool's socket nor the worker marker), fork
// and die (the pool must see the worker's death, not wait for its descendants), and
// calls whose arguments do not match the function's parameters.
//
// Worker processes are this test binary, re-run with SPINDLE_PROCESS_WORKER set: the
// static initialiser after the registrations serves calls before Catch2's main runs.
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <spindle/executors/process_pool.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

// Writes pid to path, atomically (the parent never reads half a number).
void tell(const std::string& path, pid_t pid) {
  {
    std::ofstream f(path + ".tmp");
    f << pid;
  }
  std::filesystem::rename(path + ".tmp", path);
}

// Starts `sleep 20` in the background through the shell (as system("sleep 20 &") does),
// says its pid in `path`, then dies.
int background_sleep_then_abort(std::string path) {
  const std::string cmd = "sleep 20 & echo $! > '" + path + ".tmp' && mv '" + path + ".tmp' '" + path + "'";
  if (std::system(cmd.c_str()) != 0) return -1;
  std::abort();
}

// Forks a child that only sleeps (a fork without exec keeps every fd, close-on-exec or
// not), says its pid in `path`, then dies.
int fork_then_abort(std::string path) {
  const pid_t child = ::fork();
  if (child == 0) {
    for (int i = 0; i < 20; ++i) ::sleep(1);
    ::_exit(0);
  }
  if (child < 0) return -1;
  tell(path, child);
  std::abort();
}

// Runs this very program (the test binary) with a test filter that matches nothing; a
// program that believed it was a worker would serve (or wait on) this worker's socket.
int run_self() {
  char exe[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = '\0';
  const std::string cmd = std::string("'") + exe + "' '[spindle-matches-no-test]' >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1000;
}

// Whether the called function sees the worker marker in its environment.
bool marker_visible() { return std::getenv("SPINDLE_PROCESS_WORKER") != nullptr; }

int add(int a, int b) { return a + b; }
std::string twice(const std::string& s, int n) {
  std::string r;
  for (int i = 0; i < n; ++i) r += s;
  return r;
}

// A type whose Codec writes more than it reads back: its bytes never all decode.
struct Lopsided {
  int v = 0;
};
}  // namespace
template <>
struct spindle::Codec<Lopsided> {
  static void encode(ByteWriter& w, const Lopsided& x) {
    w.put(&x.v, sizeof x.v);
    w.put(&x.v, sizeof x.v);
  }
  static Lopsided decode(ByteReader& r) {
    Lopsided x;
    r.get(&x.v, sizeof x.v);
    return x;
  }
};
namespace {
int take_lopsided(Lopsided x) { return x.v; }

SPINDLE_PROCESS_FUNCTION(add);
SPINDLE_PROCESS_FUNCTION(twice);
SPINDLE_PROCESS_FUNCTION(take_lopsided);
SPINDLE_PROCESS_FUNCTION(background_sleep_then_abort);
SPINDLE_PROCESS_FUNCTION(fork_then_abort);
SPINDLE_PROCESS_FUNCTION(run_self);
SPINDLE_PROCESS_FUNCTION(marker_visible);

// After the registrations: in a worker process this never returns.
const bool served = (serve_process_worker(), true);

std::string temp_path(const char* what) {
  static int n = 0;
  return (std::filesystem::temp_directory_path() /
          ("spindle-adversity-" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(n++)))
      .string();
}

// Whether pid is a live process (not gone, not a zombie waiting for its reaper).
bool running(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(f, stat)) return false;
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X' && state != 'x';
}

pid_t read_pid(const std::string& path) {
  int pid = 0;
  std::ifstream(path) >> pid;
  return pid_t(pid);
}

}  // namespace

TEST_CASE("a worker that starts a background program and dies fails its call at once, not when the program ends",
          "[executors][process][adversity]") {
  REQUIRE(served);
  ProcessPool pool({.workers = 1, .timeout = 60s});  // the bound, should the death go unseen
  for (auto* fn : {"background_sleep_then_abort", "fork_then_abort"}) {
    INFO(fn);
    const std::string path = temp_path("grandchild");
    CHECK_THROWS_AS(pool.call<int>(fn, path), BrokenProcessPool);
    const pid_t grandchild = read_pid(path);
    REQUIRE(grandchild > 0);
    // The failure came while the grandchild still lived: its death was not what told.
    CHECK(running(grandchild));
    ::kill(grandchild, SIGKILL);
    std::filesystem::remove(path);
    CHECK(pool.call<bool>("marker_visible") == false);  // a new worker serves the next call
  }
}

TEST_CASE("a called function sees no worker marker, and a program it runs is not a worker",
          "[executors][process][adversity]") {
  REQUIRE(served);
  ProcessPool pool({.workers = 1, .timeout = 60s});  // the bound, should the program hang
  CHECK(pool.call<bool>("marker_visible") == false);
  // The test binary run with a filter that matches nothing: Catch2 ran, and ended.
  const int rc = pool.call<int>("run_self");
  CHECK(rc != 1000);
  CHECK(rc != -1);
  CHECK(pool.processes() == 1);  // the worker survived it
}

namespace {
// What a call throws as std::invalid_argument ("" if it did not throw that).
template <class F>
std::string invalid_argument_of(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("a call whose arguments do not match the function's parameters fails, naming both signatures",
          "[executors][process][adversity]") {
  REQUIRE(served);
  ProcessPool pool({.workers = 1});
  Runtime rt(test::opts(2));
  rt.block_on([&] {
    CHECK(invalid_argument_of([&] { (void)pool.call<int>("add", 1, 2, 3); }) ==
          "ProcessPool: 'add' takes (int, int), called with (int, int, int)");
    CHECK(invalid_argument_of([&] { (void)pool.call<int>("add", std::string("abcdefgh")); }) ==
          "ProcessPool: 'add' takes (int, int), called with (std::string)");
    CHECK(invalid_argument_of([&] { (void)pool.call<int>("add", 1.5, 2.5); }) ==
          "ProcessPool: 'add' takes (int, int), called with (double, double)");
    CHECK(invalid_argument_of([&] { (void)pool.call<int>("add", 1, 2L); }) ==
          "ProcessPool: 'add' takes (int, int), called with (int, long)");
    CHECK(invalid_argument_of([&] { (void)pool.call<int>("add"); }) == "ProcessPool: 'add' takes (int, int), called with ()");
    const char* pointer = "ab";  // trivially copyable: the pointer itself would cross
    CHECK(invalid_argument_of([&] { (void)pool.call<std::string>("twice", pointer, 2); }) ==
          "ProcessPool: 'twice' takes (std::string, int), called with (char const*, int)");
    // Bytes left over after the last argument: a Codec that reads less than it wrote.
    const std::string lopsided = invalid_argument_of([&] { (void)pool.call<int>("take_lopsided", Lopsided{5}); });
    CHECK(lopsided.find("the arguments of 'take_lopsided'") != std::string::npos);
    CHECK(lopsided.find("4 byte(s) left over") != std::string::npos);
    // None of that hurt the worker: the same one answers well-formed calls.
    CHECK(pool.call<int>("add", 1, 2) == 3);
    CHECK(pool.call<std::string>("twice", std::string("ab"), 3) == "ababab");
    CHECK(pool.processes() == 1);
  });
}
