// ProcessPool against functions that misbehave around their worker process: they start
// programs (which must inherit neither the pool's socket nor the worker marker), fork
// and die (the pool must see the worker's death, not wait for its descendants), and
// calls whose function is not what the worker registered under its name: a worker that
// is another program (ProcessPoolOptions::executable, tests/process_worker_other.cpp),
// or a Codec that does not read back what it wrote.
//
// Worker processes are this test binary, re-run with SPINDLE_PROCESS_WORKER set: the
// static initialiser after the registrations serves calls before Catch2's main runs.
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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

namespace impl {
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
int echo(int v) { return v; }
std::pair<int64_t, int64_t> pair_of(int v) { return {v, v}; }
char narrow(int v) { return char(v); }
std::vector<int64_t> numbers() { return {1, 2, 3}; }
int only_here() { return 7; }
}  // namespace impl

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
int take_lopsided_impl(Lopsided x) { return x.v; }

const auto add = process_function("add", &impl::add);
const auto echo = process_function("echo", &impl::echo);
const auto pair_of = process_function("pair_of", &impl::pair_of);
const auto narrow = process_function("narrow", &impl::narrow);
const auto numbers = process_function("numbers", &impl::numbers);
const auto only_here = process_function("only_here", &impl::only_here);
const auto take_lopsided = process_function("take_lopsided", &take_lopsided_impl);
const auto background_sleep_then_abort =
    process_function("background_sleep_then_abort", &impl::background_sleep_then_abort);
const auto fork_then_abort = process_function("fork_then_abort", &impl::fork_then_abort);
const auto run_self = process_function("run_self", &impl::run_self);
const auto marker_visible = process_function("marker_visible", &impl::marker_visible);

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
  for (const auto& fn : {background_sleep_then_abort, fork_then_abort}) {
    INFO(fn.name());
    const std::string path = temp_path("grandchild");
    CHECK_THROWS_AS(pool.call(fn, path), BrokenProcessPool);
    const pid_t grandchild = read_pid(path);
    REQUIRE(grandchild > 0);
    // The failure came while the grandchild still lived: its death was not what told.
    CHECK(running(grandchild));
    ::kill(grandchild, SIGKILL);
    std::filesystem::remove(path);
    CHECK(pool.call(marker_visible) == false);  // a new worker serves the next call
  }
}

TEST_CASE("a called function sees no worker marker, and a program it runs is not a worker",
          "[executors][process][adversity]") {
  REQUIRE(served);
  ProcessPool pool({.workers = 1, .timeout = 60s});  // the bound, should the program hang
  CHECK(pool.call(marker_visible) == false);
  // The test binary run with a filter that matches nothing: Catch2 ran, and ended.
  const int rc = pool.call(run_self);
  CHECK(rc != 1000);
  CHECK(rc != -1);
  CHECK(pool.processes() == 1);  // the worker survived it
}

namespace {
// What a call throws as E ("" if it did not throw that).
template <class E, class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

// The program whose workers registered the test's names otherwise.
std::string other_worker() {
  const char* p = std::getenv("SPINDLE_PROCESS_WORKER_OTHER");
  return p ? p : "";
}
}  // namespace

TEST_CASE("workers that are another program, with other functions under the names called, fail those calls",
          "[executors][process][adversity]") {
  REQUIRE(served);
  const std::string exe = other_worker();
  INFO("SPINDLE_PROCESS_WORKER_OTHER names the other program (tests/meson.build sets it)");
  REQUIRE(!exe.empty());
  ProcessPool pool({.workers = 1, .executable = exe});
  Runtime rt(test::opts(2));
  rt.block_on([&] {
    // Other parameters, and no function under the name: refused before anything is decoded.
    CHECK(error_of<std::invalid_argument>([&] { (void)pool.call(add, 1, 2); }) ==
          "ProcessPool: 'add' takes (std::string), called with (int, int)");
    CHECK(error_of<std::invalid_argument>([&] { (void)pool.call(only_here); }) ==
          "ProcessPool: no function is registered as 'only_here'");
    // Another result: too few bytes, too many, a length prefix past the end ("abc" as a
    // vector<int64_t>: its u64 length, 3, promises 24 bytes and 3 follow).
    for (const std::string& e : {error_of<std::runtime_error>([&] { (void)pool.call(pair_of, 1); }),
                                 error_of<std::runtime_error>([&] { (void)pool.call(narrow, 1); }),
                                 error_of<std::runtime_error>([&] { (void)pool.call(numbers); })})
      CHECK(e.find("ProcessPool: cannot decode the result of '") == 0);
    // Each bad call was answered whole: the same worker serves a call that matches.
    CHECK(pool.call(echo, 42) == 42);
    CHECK(pool.processes() == 1);
  });
}

TEST_CASE("arguments whose Codec does not read back what it wrote fail the call, not the worker",
          "[executors][process][adversity]") {
  REQUIRE(served);
  ProcessPool pool({.workers = 1});
  Runtime rt(test::opts(2));
  rt.block_on([&] {
    // Bytes left over after the last argument: a Codec that reads less than it wrote.
    const std::string lopsided = error_of<std::invalid_argument>([&] { (void)pool.call(take_lopsided, Lopsided{5}); });
    CHECK(lopsided.find("the arguments of 'take_lopsided'") != std::string::npos);
    CHECK(lopsided.find("4 byte(s) left over") != std::string::npos);
    // It did not hurt the worker: the same one answers well-formed calls.
    CHECK(pool.call(add, 1, 2) == 3);
    CHECK(pool.processes() == 1);
  });
}
