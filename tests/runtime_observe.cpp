// Observability: task dumps (all_tasks, task_infos, dump_tasks, task_stack), metrics,
// and the monitor console over its Unix socket (and the spindle-monitor client).
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <spindle/monitor.hpp>

#include "support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

extern char** environ;

namespace {

const TaskInfo* find(const std::vector<TaskInfo>& v, const std::string& name) {
  for (auto& i : v)
    if (i.name == name) return &i;
  return nullptr;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Polls cond (from a fibre or a thread) until it holds or 30 s pass; returns whether it held.
template <class F>
bool eventually(F cond) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    if (in_runtime())
      sleep(100us);
    else
      std::this_thread::sleep_for(100us);
  }
  return true;
}

uint64_t sum(const Metrics& m, uint64_t WorkerMetrics::*field) {
  uint64_t s = 0;
  for (auto& w : m.workers) s += w.*field;
  return s;
}

std::string socket_path() {
  static std::atomic<int> n{0};
  return "/tmp/spindle-observe-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".sock";
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// A console client: one connection, answers read up to their terminating empty line.
class Console {
 public:
  explicit Console(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    timeval tv{30, 0};  // a console that stops answering fails the test, not hangs it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      const int e = errno;
      ::close(fd_);
      throw std::system_error(e, std::generic_category(), "connect " + path);
    }
    greeting_ = read_answer();
  }
  ~Console() { ::close(fd_); }
  const std::string& greeting() const { return greeting_; }
  std::string ask(const std::string& cmd) {
    const std::string line = cmd + "\n";
    REQUIRE(::send(fd_, line.data(), line.size(), MSG_NOSIGNAL) == ssize_t(line.size()));
    return read_answer();
  }
  // True once the console has closed the connection (recv returns 0).
  bool closed_by_peer() {
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  std::string read_answer() {
    for (;;) {
      const auto end = buf_.find("\n\n");
      if (end != std::string::npos) {
        std::string a = buf_.substr(0, end + 1);
        buf_.erase(0, end + 2);
        return a;
      }
      char tmp[4096];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) throw std::runtime_error("console: connection ended or timed out; got so far: " + buf_);
      buf_.append(tmp, std::size_t(n));
    }
  }
  int fd_ = -1;
  std::string buf_, greeting_;
};

// Runs the spindle-monitor client with args; returns its exit status and stdout.
int run_tool(const std::vector<std::string>& args, std::string& out) {
  const char* tool = std::getenv("SPINDLE_MONITOR_TOOL");
  REQUIRE(tool != nullptr);  // set by tests/meson.build
  int pipefd[2];
  REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(tool));
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  const int rc = ::posix_spawn(&pid, tool, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipefd[1]);
  REQUIRE(rc == 0);
  char buf[4096];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) out.append(buf, std::size_t(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("task_infos and all_tasks list a task not started yet, a sleeping one with its file:line, and the caller",
          "[observe]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([&rt] {
    std::atomic<unsigned> sleep_line{0};
    auto sleeper = spawn(TaskOptions{.name = "sleeper"}, [&] {
      sleep_line = __LINE__ + 1;
      sleep(1h);
    });
    test::until_suspended(sleeper);
    Future<> gate;
    // Pinned to our loop, and no suspension before the dump: it cannot have started.
    auto fresh = spawn(TaskOptions{.name = "fresh", .pinned = true}, [gate]() mutable { gate.get(); });
    const auto infos = task_infos();

    const TaskInfo* f = find(infos, "fresh");
    REQUIRE(f);
    CHECK(f->where.state == TaskState::ready);
    CHECK_FALSE(f->where.started);
    CHECK(f->loop >= 0);
    CHECK(f->id == fresh.id());
    CHECK(f->task == fresh);

    const TaskInfo* s = find(infos, "sleeper");
    REQUIRE(s);
    CHECK(s->where.state == TaskState::suspended);
    CHECK(s->where.started);
    CHECK(s->loop == -1);
    CHECK(ends_with(s->where.file, "runtime_observe.cpp"));
    CHECK(s->where.line == sleep_line.load());
    CHECK(s->id == sleeper.id());
    CHECK(s->stack.empty());  // not asked for

    bool me_listed = false;
    for (auto& i : infos) {
      if (i.task == current_task()) {
        me_listed = true;
        CHECK(i.where.state == TaskState::running);
        CHECK(i.loop >= 0);
        CHECK(i.name == "main");
      }
    }
    CHECK(me_listed);
    CHECK(infos.size() == 3);  // nothing else lives here

    // all_tasks: the same three (fresh may have started meanwhile; it still lives).
    auto all = all_tasks();
    CHECK(all.size() == 3);
    for (auto* t : {&fresh, &sleeper}) CHECK(std::find(all.begin(), all.end(), Task<>(*t)) != all.end());
    CHECK(std::find(all.begin(), all.end(), current_task()) != all.end());

    // dump_tasks: the table, with the sleeper's wait and its stack.
    std::ostringstream os;
    rt.dump_tasks(os);
    const std::string d = os.str();
    INFO(d);
    CHECK(contains(d, "sleeper"));
    CHECK(contains(d, "suspended"));
    CHECK(contains(d, "runtime_observe.cpp:" + std::to_string(sleep_line.load())));
    CHECK(contains(d, "fresh"));
    CHECK(contains(d, "running"));
    CHECK(contains(d, "#0 "));

    gate.set_result();
    fresh.get();
    sleeper.cancel();
    CHECK_THROWS_AS(sleeper.get(), CancelledError);
    CHECK(all_tasks().size() == 1);  // only the caller is left
  });
}

TEST_CASE("task_stack: a suspended task's stack names its wait; running, queued and done tasks have none",
          "[observe]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    auto sleeper = spawn([] { sleep(1h); });
    test::until_suspended(sleeper);
    for (int round = 0; round < 3; ++round) {  // reading the stack leaves the task as it was
      const auto st = task_stack(sleeper);
      REQUIRE_FALSE(st.empty());
      bool names_sleep = false;
      for (auto& f : st) names_sleep = names_sleep || contains(f.function, "sleep");
      INFO(to_string(st.front(), 0));
      CHECK(names_sleep);
      CHECK_FALSE(sleeper.done());
    }
    CHECK(task_stack(current_task()).empty());  // running
    auto done = spawn([] {});
    done.get();
    CHECK(task_stack(done).empty());
    CHECK_THROWS_AS(task_stack(Task<>()), InvalidStateError);
    sleeper.cancel();
    CHECK_THROWS_AS(sleeper.get(), CancelledError);
  });
}

TEST_CASE("task_stack: a fibre with little stack left is read by its frame-pointer chain instead", "[observe]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    // A 64 KiB stack leaves less than the 64 KiB the unwinder is given.
    auto small = spawn(TaskOptions{.stack_size = 64 * 1024}, [] { sleep(1h); });
    test::until_suspended(small);
    CHECK_FALSE(task_stack(small).empty());
    CHECK_FALSE(small.done());
    small.cancel();
    CHECK_THROWS_AS(small.get(), CancelledError);
  });
}

TEST_CASE("task_stack races wake-ups: a task woken while its stack is read is not lost", "[observe]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([] {
    // Ping-pong tasks that suspend and wake all the time, their stacks read meanwhile.
    constexpr int kRounds = 2000 / test::kScaleDown;
    Future<> go;
    std::atomic<bool> stop{false};
    std::atomic<int> yields{0};
    auto a = spawn([&] {
      int k = 0;
      while (!stop.load()) {
        yield();
        yields.store(++k);
      }
      return k;
    });
    auto b = spawn([&] {
      // Until a has gone round at least once too: a loop slowed down (TSan, a busy
      // machine) may run b's rounds before a's first step.
      for (int i = 0; i < kRounds || yields.load() == 0; ++i) sleep(10us);
      stop = true;
    });
    std::size_t read = 0;
    while (!b.done()) {
      read += task_stack(a).size() + task_stack(b).size();
      yield();
    }
    b.get();
    CHECK(a.get() > 0);
    (void)read;
  });
}

TEST_CASE("a loop stuck in a long step: the dump goes on without its queue and lists the stuck task as running",
          "[observe]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  std::atomic<bool> spinning{false}, release{false};
  auto stuck = rt.spawn(TaskOptions{.name = "stuck", .pinned = true, .loop = 0}, [&] {
    spinning = true;
    while (!release.load()) {
    }
  });
  while (!spinning.load()) std::this_thread::yield();
  std::ostringstream os;
  rt.dump_tasks(os);  // from a foreign thread
  release = true;
  stuck.get();
  const std::string d = os.str();
  INFO(d);
  CHECK(contains(d, "stuck"));
  CHECK(contains(d, "running"));
  CHECK(contains(d, "note: loop 0 did not list its queue in time"));
  // Nothing is left once it ended (the dump's helper on loop 0 was cancelled unstarted).
  CHECK(eventually([&] { return all_tasks(rt).empty(); }));
}

TEST_CASE("metrics count spawned, completed, failed and cancelled tasks exactly", "[observe][metrics]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  {
    const Metrics m = rt.metrics();
    CHECK(m.workers.size() == n);
    CHECK(m.spawned == 0);
    CHECK(m.live_tasks == 0);
  }
  constexpr uint64_t N = 200, F = 7, K = 9;
  rt.block_on([&] {
    std::vector<Task<uint64_t>> ts;
    for (uint64_t i = 0; i < N; ++i) ts.push_back(spawn([i] { return i; }));
    for (auto& t : ts) t.get();
    CHECK(rt.metrics().spawned == N + 1);  // and main
    CHECK(eventually([&] { return rt.metrics().completed == N; }));
    std::vector<Task<>> failing;
    for (uint64_t i = 0; i < F; ++i) failing.push_back(spawn([] { throw std::runtime_error("no"); }));
    for (auto& t : failing) CHECK_THROWS_AS(t.get(), std::runtime_error);
    std::vector<Task<>> doomed;
    for (uint64_t i = 0; i < K; ++i) {
      doomed.push_back(spawn(test::forever));
      if (i % 2) doomed.back().cancel();  // some before they start, some while they wait
    }
    for (auto& t : doomed) {
      test::until_suspended(t);
      t.cancel();
    }
    for (auto& t : doomed) CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK(eventually([&] {
      const Metrics m = rt.metrics();
      return m.cancelled == K && m.failed == F && m.completed == N + F && m.live_tasks == 1;
    }));
    const Metrics m = rt.metrics();
    CHECK(m.spawned == N + F + K + 1);
  });
  CHECK(eventually([&] { return rt.metrics().live_tasks == 0; }));
  const Metrics m = rt.metrics();
  CHECK(m.completed == N + F + 1);
  CHECK(m.cancelled == K);
  CHECK(m.spawned == N + F + K + 1);
  CHECK(sum(m, &WorkerMetrics::tasks_run) >= N + F + 1);
  CHECK(m.global_queue == 0);
}

TEST_CASE("metrics: steals are counted, and a single loop never steals", "[observe][metrics]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  constexpr int kTasks = 100;
  std::atomic<int> ran{0};
  if (n == 1) {
    rt.block_on([&] {
      std::vector<Task<>> ts;
      for (int i = 0; i < kTasks; ++i) ts.push_back(spawn([&] { ++ran; }));
      for (auto& t : ts) t.get();
    });
    const Metrics m = rt.metrics();
    CHECK(sum(m, &WorkerMetrics::steal_attempts) == 0);
    CHECK(sum(m, &WorkerMetrics::steals) == 0);
    return;
  }
  // Loop 0 spins in a task that spawned kTasks into its own queue: another loop can only
  // run them by stealing them.
  bool all_ran = rt.block_on([&] {
    return spawn(TaskOptions{.pinned = true, .loop = 0},
                 [&] {
                   std::vector<Task<>> ts;
                   for (int i = 0; i < kTasks; ++i) ts.push_back(spawn([&] { ++ran; }));
                   const auto give_up = std::chrono::steady_clock::now() + 30s;
                   while (ran.load() < kTasks && std::chrono::steady_clock::now() < give_up) {
                   }
                   const bool ok = ran.load() == kTasks;
                   for (auto& t : ts) t.get();
                   return ok;
                 })
        .get();
  });
  REQUIRE(all_ran);
  const Metrics m = rt.metrics();
  CHECK(sum(m, &WorkerMetrics::steals) >= 1);
  CHECK(sum(m, &WorkerMetrics::tasks_stolen) >= uint64_t(kTasks));
  CHECK(sum(m, &WorkerMetrics::steal_attempts) >= sum(m, &WorkerMetrics::steals));
  uint64_t started_elsewhere = 0;
  for (auto& w : m.workers)
    if (w.index != 0) started_elsewhere += w.tasks_started;
  CHECK(started_elsewhere >= uint64_t(kTasks));
}

TEST_CASE("metrics: timers, parks, busy time, fibre stacks and the blocking pool", "[observe][metrics]") {
  const unsigned n = SPINDLE_WORKERS();
  test::Checked harness(n);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    sleep(1ms);  // a timer fires
    // Every loop goes idle and parks (after its spin): waited for, not assumed after a
    // fixed sleep, since a loaded machine may not run a loop's thread for a while.
    while (sum(rt.metrics(), &WorkerMetrics::parks) == 0) sleep(1ms);
    Metrics m = rt.metrics();
    CHECK(sum(m, &WorkerMetrics::timers_fired) >= 1);
    CHECK(sum(m, &WorkerMetrics::parks) >= 1);
    for (auto& w : m.workers) CHECK(w.busy <= m.uptime);

    constexpr std::size_t K = 20;
    std::vector<Task<>> sleepers;
    for (std::size_t i = 0; i < K; ++i) sleepers.push_back(spawn(test::forever));
    for (auto& t : sleepers) test::until_suspended(t);
    CHECK(eventually([&] { return rt.metrics().stacks_in_use == K + 1; }));  // and main
    m = rt.metrics();
    CHECK(m.stacks_high_water >= K + 1);
    CHECK(m.stacks_made >= K + 1);
    for (auto& t : sleepers) t.cancel();
    for (auto& t : sleepers) CHECK_THROWS_AS(t.get(), CancelledError);
    CHECK(eventually([&] { return rt.metrics().stacks_in_use == 1; }));
    CHECK(rt.metrics().stacks_high_water >= K + 1);

    CHECK(to_thread([] { return 5; }) == 5);
    m = rt.metrics();
    CHECK(m.blocking_threads >= 1);  // kept alive for a while after its job
    CHECK(m.blocking_queue == 0);

    const std::string text = to_string(m);
    CHECK(contains(text, "spawned "));
    CHECK(contains(text, "loop 0: tasks_run "));
  });
}

TEST_CASE("monitor console: ps, where, cancel, stats, help, errors; the socket file goes at shutdown",
          "[observe][monitor]") {
  const unsigned n = SPINDLE_WORKERS();
  const std::string path = socket_path();
  Options o = test::opts(n);
  o.monitor = "unix:" + path;
  {
    test::Checked harness(o);
    Runtime& rt = harness.rt;
    REQUIRE(exists(path));
    std::atomic<unsigned> line{0};
    auto sleeper = rt.spawn(TaskOptions{.name = "console-sleeper"}, [&] {
      line = __LINE__ + 1;
      sleep(1h);
    });
    test::until_suspended(sleeper);
    const std::string id = std::to_string(sleeper.id());

    Console c(path);
    CHECK(contains(c.greeting(), "spindle monitor"));
    const std::string help = c.ask("help");
    for (const char* cmd : {"ps", "where ID", "cancel ID", "stats", "help"}) CHECK(contains(help, cmd));

    const std::string ps = c.ask("ps");
    INFO(ps);
    CHECK(contains(ps, "console-sleeper"));
    CHECK(contains(ps, "suspended"));
    CHECK(contains(ps, "runtime_observe.cpp:" + std::to_string(line.load())));

    const std::string where = c.ask("where " + id);
    INFO(where);
    CHECK(contains(where, "task " + id + " (console-sleeper): suspended"));
    CHECK(contains(where, "runtime_observe.cpp:" + std::to_string(line.load())));
    CHECK(contains(where, "stack:"));
    CHECK(contains(where, "#0 "));
    CHECK(contains(where, "sleep"));

    const std::string stats = c.ask("stats");
    CHECK(contains(stats, "live_tasks "));
    CHECK(contains(stats, "spawned "));
    CHECK(contains(stats, "loop 0: "));

    // Bad commands get an error line, and the console goes on.
    CHECK(c.ask("frobnicate") == "error: unknown command 'frobnicate' (try help)\n");
    CHECK(c.ask("where").rfind("error: ", 0) == 0);
    CHECK(c.ask("where abc").rfind("error: ", 0) == 0);
    CHECK(c.ask("cancel 99999999999").rfind("error: no live task", 0) == 0);
    CHECK(c.ask("ps now").rfind("error: ", 0) == 0);
    CHECK(contains(c.ask("help"), "cancel ID"));

    // A second connection at the same time.
    {
      Console c2(path);
      CHECK(contains(c2.ask("ps"), "console-sleeper"));
    }

    // cancel really cancels.
    CHECK(contains(c.ask("cancel " + id), "cancelled task " + id));
    CHECK_THROWS_AS(sleeper.get(), CancelledError);
    CHECK(c.ask("cancel " + id).rfind("error: ", 0) == 0);  // gone now

    CHECK(c.ask("quit") == "bye\n");
    CHECK(c.closed_by_peer());
    CHECK(exists(path));
  }
  CHECK_FALSE(exists(path));  // removed at shutdown
}

TEST_CASE("spindle-monitor runs one command, or relays", "[observe][monitor]") {
  const std::string path = socket_path();
  Options o = test::opts(2);
  o.monitor = "unix:" + path;
  test::Checked harness(o);
  Runtime& rt = harness.rt;
  auto sleeper = rt.spawn(TaskOptions{.name = "tool-sleeper"}, [] { sleep(1h); });
  test::until_suspended(sleeper);
  std::string out;
  CHECK(run_tool({path, "ps"}, out) == 0);
  CHECK(contains(out, "tool-sleeper"));
  out.clear();
  CHECK(run_tool({"unix:" + path, "where", std::to_string(sleeper.id())}, out) == 0);
  CHECK(contains(out, "suspended"));
  out.clear();
  CHECK(run_tool({path, "bogus"}, out) == 1);
  CHECK(contains(out, "error: unknown command"));
  out.clear();
  CHECK(run_tool({path + ".missing", "ps"}, out) == 2);
  sleeper.cancel();
  CHECK_THROWS_AS(sleeper.get(), CancelledError);
}

TEST_CASE("monitor addresses: a bad one is refused with its text; a live server is not taken over",
          "[observe][monitor]") {
  Options o = test::opts(1);
  o.monitor = "tcp:127.0.0.1:1";
  try {
    Runtime rt(o);
    FAIL("a tcp: monitor address was accepted");
  } catch (const std::invalid_argument& e) {
    CHECK(contains(e.what(), "tcp:127.0.0.1:1"));
  }
  o.monitor = "unix:";
  CHECK_THROWS_AS(Runtime(o), std::invalid_argument);

  // A regular file at the path is not ours to remove.
  const std::string file = socket_path();
  {
    const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    ::close(fd);
  }
  o.monitor = "unix:" + file;
  CHECK_THROWS_AS(Runtime(o), std::system_error);
  CHECK(exists(file));
  ::unlink(file.c_str());

  // A live console on the path: a second runtime fails, the first keeps serving.
  const std::string path = socket_path();
  o.monitor = "unix:" + path;
  Runtime first(o);
  CHECK_THROWS_AS(Runtime(o), std::system_error);
  Console c(path);
  CHECK(contains(c.ask("help"), "stats"));
  // A stale socket file (nobody listening) is replaced.
  first.shutdown();
  CHECK_FALSE(exists(path));
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  ::close(fd);  // the file stays, nobody listens
  REQUIRE(exists(path));
  {
    Runtime again(o);
    Console c2(path);
    CHECK(contains(c2.greeting(), "spindle monitor"));
  }
  CHECK_FALSE(exists(path));
}
