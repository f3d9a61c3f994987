// Child processes: 10 MiB of stdout read through a pipe, communicate() through cat with
// more input than a pipe holds, both output pipes filled at once, exit codes and
// signals, programs that cannot be run, wait() cancelled or timed out and the child
// reaped later, a Process destroyed while its child runs, env / cwd / stdio options,
// what the child inherits (fds, signal mask), EPIPE instead of SIGPIPE, and threads
// outside the runtime. Every case checks that no fd and no child process is left over.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <spindle/io.hpp>
#include <spindle/io/signals.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

using test::FdLeakCheck;

// Fails the test if this process still has a child (running or a zombie) at its end.
// Declare it first: it checks after the runtime (and any reaper task) is gone.
struct NoChildLeft {
  ~NoChildLeft() {
    const pid_t r = ::waitpid(-1, nullptr, WNOHANG);
    const int e = errno;
    CHECK(r == -1);
    CHECK(e == ECHILD);
  }
};

// Checks run on the test thread: a case's fibres return what they saw.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = char('a' + (i * 7 + i / 4096) % 26);
  return s;
}

bool reaped(pid_t pid) { return ::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD; }

}  // namespace

TEST_CASE("a child's 10 MiB of stdout is read in full", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  constexpr std::size_t kSize = 10 * 1024 * 1024;
  auto [total, nonzero, status] = rt.block_on([] {
    Process p = Process::spawn({"head", "-c", std::to_string(kSize), "/dev/zero"}, {.out = Stdio::pipe});
    std::size_t total = 0, nonzero = 0;
    std::vector<char> buf(64 * 1024);
    while (std::size_t n = p.out().read(buf.data(), buf.size())) {
      total += n;
      for (std::size_t i = 0; i < n; ++i) nonzero += buf[i] != 0;
    }
    return std::tuple{total, nonzero, p.wait()};
  });
  CHECK(total == kSize);
  CHECK(nonzero == 0);
  CHECK(status.success());
}

TEST_CASE("communicate echoes more than a pipe holds through cat", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  const std::string input = pattern(1024 * 1024);  // a pipe holds 64 KiB
  const ProcessOutput r = rt.block_on([&] {
    Process p = Process::spawn({"cat"}, {.in = Stdio::pipe, .out = Stdio::pipe, .err = Stdio::pipe});
    return p.communicate(input);
  });
  CHECK(r.out.size() == input.size());
  CHECK(r.out == input);
  CHECK(r.err.empty());
  CHECK(r.status == ExitStatus{});
}

TEST_CASE("communicate drains stderr while the child has not written stdout yet", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  const ProcessOutput r = rt.block_on([] {
    // The child blocks on a full stderr pipe before it reads stdin or writes stdout: a
    // communicate that read stdout first, or wrote all of stdin first, would deadlock.
    Process p = Process::spawn({"sh", "-c", "head -c 1048576 /dev/zero >&2; head -c 300000 | wc -c"},
                               {.in = Stdio::pipe, .out = Stdio::pipe, .err = Stdio::pipe});
    return p.communicate(std::string(300000, 'x'));
  });
  CHECK(r.err.size() == 1048576);
  CHECK(std::stoul(r.out) == 300000);
  CHECK(r.status.success());
}

TEST_CASE("many children at once, each through communicate", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  const int good = rt.block_on([] {
    std::vector<Task<bool>> ts;
    for (int i = 0; i < 16; ++i) {
      ts.push_back(spawn([i] {
        const std::string in = pattern(100000 + 1000 * std::size_t(i));
        Process p = Process::spawn({"cat"}, {.in = Stdio::pipe, .out = Stdio::pipe});
        const ProcessOutput r = p.communicate(in);
        return r.out == in && r.status.success();
      }));
    }
    int n = 0;
    for (auto& t : ts) n += t.get();
    return n;
  });
  CHECK(good == 16);
}

TEST_CASE("exit codes and terminating signals", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  auto [three, killed, termed, before] = rt.block_on([] {
    Process a = Process::spawn({"sh", "-c", "exit 3"});
    const ExitStatus three = a.wait();
    Process b = Process::spawn({"sleep", "60"});
    const std::optional<ExitStatus> before = b.returncode();
    b.kill();
    const ExitStatus killed = b.wait();
    Process c = Process::spawn({"sh", "-c", "kill -TERM $$; sleep 60"});
    const ExitStatus termed = c.wait();
    return std::tuple{three, killed, termed, before};
  });
  CHECK(three.exited());
  CHECK(three.code == 3);
  CHECK(three.returncode() == 3);
  CHECK_FALSE(three.success());
  CHECK(three.to_string() == "exit code 3");
  CHECK_FALSE(before.has_value());
  CHECK_FALSE(killed.exited());
  CHECK(killed.signal == SIGKILL);
  CHECK(killed.returncode() == -SIGKILL);
  CHECK(killed.to_string() == "killed by signal 9 (SIGKILL)");
  CHECK(termed.signal == SIGTERM);
}

TEST_CASE("the status stays available, and signals after the reap do nothing", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  const bool ok = rt.block_on([] {
    Process p = Process::spawn({"true"});
    const ExitStatus s = p.wait();
    p.kill();  // reaped: a no-op, never another process's signal
    p.terminate();
    return s.success() && p.wait() == s && p.returncode() == s && p.pid() > 0;
  });
  CHECK(ok);
}

TEST_CASE("a program that cannot be run is a system_error naming it", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    try {
      (void)Process::spawn({"spindle-no-such-program", "x"}, {.in = Stdio::pipe, .out = Stdio::pipe});
      FAIL("spawned a program that does not exist");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find("spindle-no-such-program") != std::string::npos);
    }
    try {
      (void)Process::spawn({"/nonexistent/dir/prog"});
      FAIL("spawned a path that does not exist");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find("/nonexistent/dir/prog") != std::string::npos);
    }
    try {
      (void)Process::spawn({"/dev/null"});  // exists, but is not executable
      FAIL("spawned /dev/null");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == EACCES);
    }
    try {
      (void)Process::spawn({"true"}, {.cwd = "/nonexistent-spindle-dir"});
      FAIL("spawned in a directory that does not exist");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find("/nonexistent-spindle-dir") != std::string::npos);
    }
    CHECK_THROWS_AS(Process::spawn({}), std::invalid_argument);
    CHECK_THROWS_AS(Process::spawn({""}), std::invalid_argument);
    CHECK_THROWS_AS(Process::spawn({"true", std::string("a\0b", 3)}), std::invalid_argument);
    CHECK_THROWS_AS(Process::spawn({"true"}, {.out = Stdio::to_stdout}), std::invalid_argument);
    CHECK_THROWS_AS(Process::spawn({"true"}, {.env = std::map<std::string, std::string>{{"A=B", "c"}}}),
                    std::invalid_argument);
    Process none;
    CHECK_THROWS_AS(none.wait(), std::logic_error);
    Process no_stdin = Process::spawn({"true"});
    CHECK_THROWS_AS(no_stdin.communicate("input"), std::invalid_argument);
    CHECK(no_stdin.wait().success());
  });
}

TEST_CASE("wait cancelled or timed out leaves the child to kill and reap later", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Process p = Process::spawn({"sleep", "60"});
    CHECK_THROWS_AS(p.wait(20ms), TimeoutError);
    CHECK_THROWS_AS(wait_for([&] { return p.wait(); }, 20ms), TimeoutError);
    Task<ExitStatus> waiter = spawn([&] { return p.wait(); });
    test::until_suspended(waiter);
    CHECK(waiter.cancel());
    CHECK_THROWS_AS(waiter.get(), CancelledError);
    CHECK_FALSE(p.returncode().has_value());  // still running, not reaped
    // A waiter in another fibre sees the kill another fibre sends.
    Task<ExitStatus> again = spawn([&] { return p.wait(); });
    test::until_suspended(again);
    p.kill();
    CHECK(again.get().signal == SIGKILL);
    CHECK(p.wait().signal == SIGKILL);
  });
}

TEST_CASE("communicate cut off by a timeout leaves the child running", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    Process p = Process::spawn({"sh", "-c", "echo started; exec sleep 60"},
                               {.in = Stdio::pipe, .out = Stdio::pipe, .err = Stdio::pipe});
    CHECK_THROWS_AS(timeout(50ms, [&] { return p.communicate("x"); }), TimeoutError);
    CHECK_FALSE(p.returncode().has_value());
    p.terminate();
    CHECK(p.wait().signal == SIGTERM);
  });
}

TEST_CASE("a Process destroyed while its child runs kills and reaps it", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  pid_t in_fibre = -1, in_thread = -1;
  {
    FdLeakCheck fdc;
    {
      test::Checked harness(workers);
      Runtime& rt = harness.rt;
      in_fibre = rt.block_on([] {
        pid_t pid;
        {
          Process p = Process::spawn({"sleep", "60"}, {.in = Stdio::pipe, .out = Stdio::pipe});
          pid = p.pid();
        }  // killed here; a reaper task reaps it without blocking this worker
        // Move-assignment releases the old child the same way.
        Process a = Process::spawn({"sleep", "60"});
        a = Process::spawn({"true"});
        CHECK(a.wait().success());
        return pid;
      });
    }  // the runtime's shutdown ends every reaper: nothing is left afterwards
    CHECK(reaped(in_fibre));
    {
      // Outside a runtime the destructor reaps before it returns.
      Process p = Process::spawn({"sleep", "60"});
      in_thread = p.pid();
    }
    CHECK(reaped(in_thread));
  }
}

TEST_CASE("env, cwd and the stdio choices", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  auto outs = rt.block_on([] {
    std::vector<std::string> o;
    o.push_back(Process::spawn(
                    {"env"}, {.out = Stdio::pipe, .env = std::map<std::string, std::string>{{"A", "1"}, {"B", "x y"}}})
                    .communicate()
                    .out);
    o.push_back(Process::spawn({"pwd"}, {.out = Stdio::pipe, .cwd = "/"}).communicate().out);
    o.push_back(Process::spawn({"cat"}, {.in = Stdio::devnull, .out = Stdio::pipe}).communicate().out);
    o.push_back(Process::spawn({"sh", "-c", "echo a; echo b >&2"}, {.out = Stdio::pipe, .err = Stdio::to_stdout})
                    .communicate()
                    .out);
    const ProcessOutput both =
        Process::spawn({"sh", "-c", "echo a; echo b >&2"}, {.out = Stdio::pipe, .err = Stdio::pipe}).communicate();
    o.push_back(both.out + "|" + both.err);
    o.push_back(Process::spawn({"sh", "-c", "echo a; echo b >&2"}, {.out = Stdio::pipe, .err = Stdio::devnull})
                    .communicate()
                    .out);
    // The pipes are streams: read_line works on them.
    Process lines = Process::spawn({"printf", "one\\ntwo\\n"}, {.out = Stdio::pipe});
    std::string l = lines.out().read_line();
    l += lines.out().read_line();
    l += "[" + lines.out().read_line() + "]";
    o.push_back(l);
    CHECK(lines.wait().success());
    return o;
  });
  REQUIRE(outs.size() == 7);
  CHECK(outs[0] == "A=1\nB=x y\n");
  CHECK(outs[1] == "/\n");
  CHECK(outs[2] == "");
  CHECK(outs[3] == "a\nb\n");
  CHECK(outs[4] == "a\n|b\n");
  CHECK(outs[5] == "a\n");
  CHECK(outs[6] == "one\ntwo\n[]");
}

TEST_CASE("the child gets fds 0-2 only and an empty signal mask", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  std::string fds, mask;
  std::optional<ExitStatus> termed;
  // An fd without FD_CLOEXEC, as a careless library might leave: close_fds keeps it out.
  const int stray = ::open("/dev/null", O_RDONLY);
  REQUIRE(stray > 2);
  // The runtime's threads block SIGTERM and SIGUSR1 (inherited from this thread, as
  // block_signals asks); the child must not inherit that, or terminate() would not end it.
  std::thread t([&] {
    block_signals({SIGTERM, SIGUSR1});
    test::Checked harness(workers);
    Runtime& rt = harness.rt;
    rt.block_on([&] {
      fds = Process::spawn({"ls", "/proc/self/fd"}, {.out = Stdio::pipe}).communicate().out;
      mask = Process::spawn({"grep", "SigBlk", "/proc/self/status"}, {.out = Stdio::pipe}).communicate().out;
      Process p = Process::spawn({"sleep", "60"});
      p.terminate();
      try {
        termed = p.wait(10s);
      } catch (const TimeoutError&) {  // SIGTERM stayed blocked in the child
        p.kill();
        (void)p.wait();
      }
    });
  });
  t.join();
  ::close(stray);
  CHECK(fds == "0\n1\n2\n3\n");  // 3: the directory ls is reading
  CHECK(mask == "SigBlk:\t0000000000000000\n");
  REQUIRE(termed.has_value());
  CHECK(termed->signal == SIGTERM);
}

TEST_CASE("writing to a child that is gone is EPIPE, never SIGPIPE", "[io][process]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  const int err = rt.block_on([] {
    Process p = Process::spawn({"true"}, {.in = Stdio::pipe});
    CHECK(p.wait().success());
    try {
      p.in().write_all(pattern(256 * 1024));
    } catch (const std::system_error& e) {
      return e.code().value();
    }
    return 0;
  });
  CHECK(err == EPIPE);
  sigset_t pending;
  sigpending(&pending);
  CHECK(sigismember(&pending, SIGPIPE) == 0);  // consumed, not left for later
}

TEST_CASE("a thread outside the runtime spawns, communicates and waits", "[io][process]") {
  NoChildLeft ncl;
  FdLeakCheck fdc;
  const std::string input = pattern(512 * 1024);
  Process p = Process::spawn({"sh", "-c", "cat; echo done >&2; exit 5"},
                             {.in = Stdio::pipe, .out = Stdio::pipe, .err = Stdio::pipe});
  const ProcessOutput r = p.communicate(input);
  CHECK(r.out == input);
  CHECK(r.err == "done\n");
  CHECK(r.status.code == 5);
  Process q = Process::spawn({"sleep", "60"});
  CHECK_THROWS_AS(q.wait(20ms), TimeoutError);
  q.kill();
  CHECK(q.wait().signal == SIGKILL);
}
