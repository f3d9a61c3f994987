// Process: posix_spawnp, pipes as PipeStreams, a pidfd on the reactor for the exit.
//
// Owns:     ChildState (heap, so that a Process moves freely and a reaper task can take
//           it over): the pid, the pidfd's FdSource, and the exit status once reaped.
// Threads:  `status` is guarded by `mu`, and so is every waitid: whoever reaps stores the
//           status under the same lock, so a fibre in wait() and one calling returncode()
//           never both reap (the loser would get ECHILD) and both see the one status.
//           mu is held for a syscall at most, never across a suspension.
// Waiting:  wait() tries waitid(WNOHANG) first; on "still running" it waits for the pidfd
//           to become readable (the kernel signals it when the child exits) through
//           io_call, so cancellation, timeouts and foreign threads work as for a socket.
// Release (destructor, move-assignment), see process.hpp:
//   1. close the three pipes;
//   2. if the child has not been reaped: SIGKILL through the pidfd, try to reap;
//   3. still there: in a fibre, a "process-reaper" task takes ChildState and waits on the
//      reactor; otherwise (or if no task can be spawned) a blocking waitid reaps it. A
//      reaper that is cancelled or dropped unrun (runtime shutdown) reaps blocking from
//      its destructor;
//   4. ChildState's destructor closes the pidfd (FdSource close sequence).
#include <spindle/io/process.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include <spindle/errors.hpp>
#include <spindle/runtime.hpp>
#include <spindle/task.hpp>
#include <spindle/waiting.hpp>

#include "syscall.hpp"

extern char** environ;

namespace spindle {

namespace detail {

namespace {
// Through syscall(2): glibc 2.36's <sys/pidfd.h> lacks the extern "C" for C++.
int pidfd_open(pid_t pid, unsigned flags) noexcept { return int(::syscall(SYS_pidfd_open, pid, flags)); }
int pidfd_send_signal(int pidfd, int sig) noexcept {
  return int(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}
constexpr unsigned kPidfdNonblock = O_NONBLOCK;  // PIDFD_NONBLOCK
}  // namespace

ssize_t write_nosigpipe(int fd, const void* buf, std::size_t n) {
  // A write to a pipe whose reader is gone raises SIGPIPE in the writing thread (default
  // action: death). Blocked, it stays pending on this thread and is consumed below, unless
  // one was pending already (someone else's, left alone). No suspension happens between
  // the block and the restore, so the fibre cannot migrate to another thread meanwhile.
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  const bool was_blocked = sigismember(&old, SIGPIPE) == 1;
  bool was_pending = false;
  if (was_blocked) {  // only then can a SIGPIPE already be pending for this thread
    sigset_t pending;
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE) == 1;
  }
  const ssize_t r = ::write(fd, buf, n);
  const int e = errno;
  if (r < 0 && e == EPIPE && !was_pending) {
    const timespec zero{0, 0};
    while (::sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  if (!was_blocked) pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = e;
  return r;
}

struct ChildState {
  const pid_t pid;
  FdSource* const pidfd;
  std::mutex mu;
  std::optional<ExitStatus> status;  // under mu; set once, when reaped

  ChildState(pid_t p, FdSource* fd) noexcept : pid(p), pidfd(fd) {}
  ChildState(const ChildState&) = delete;
  ChildState& operator=(const ChildState&) = delete;
  ~ChildState() { pidfd->close(); }

  static ExitStatus decode(const siginfo_t& si) noexcept {
    ExitStatus s;
    if (si.si_code == CLD_EXITED) {
      s.code = si.si_status;
    } else {  // CLD_KILLED, CLD_DUMPED (WEXITED reports nothing else)
      s.signal = si.si_status;
    }
    return s;
  }

  // Reaps the child if it has ended; std::nullopt while it runs. Throws system_error.
  std::optional<ExitStatus> poll() {
    std::lock_guard lk(mu);
    if (status) return status;
    siginfo_t si;
    si.si_pid = 0;
    while (::waitid(P_PIDFD, id_t(pidfd->fd()), &si, WEXITED | WNOHANG) != 0) {
      if (errno == EAGAIN) return std::nullopt;  // a non-blocking pidfd may say so instead
      if (errno != EINTR) throw_errno(errno, ("waitid(pid " + std::to_string(pid) + ")").c_str());
    }
    if (si.si_pid == 0) return std::nullopt;
    status = decode(si);
    return status;
  }

  // Waits (through the reactor, or poll(2) from a foreign thread) until the child ends.
  ExitStatus wait(int64_t deadline_ns) {
    std::optional<ExitStatus> got;
    io_call(pidfd, Dir::read, deadline_ns, "wait", std::source_location::current(), [&](int) -> ssize_t {
      got = poll();
      if (got) return 0;
      errno = EAGAIN;
      return -1;
    });
    return *got;
  }

  // Reaps with a blocking waitid (the child was sent SIGKILL). Never throws.
  void reap_blocking() noexcept {
    std::lock_guard lk(mu);
    if (status) return;
    siginfo_t si;
    si.si_pid = 0;
    // The pid is still ours: the child is not reaped, and only we reap it (under mu).
    while (::waitid(P_PID, id_t(pid), &si, WEXITED) != 0) {
      if (errno != EINTR) return;  // ECHILD: reaped behind our back; nothing left to do
    }
    status = decode(si);
  }

  void signal(int sig) {
    std::lock_guard lk(mu);  // not after reaping: a reaped child has no pid any more
    if (status) return;
    if (pidfd_send_signal(pidfd->fd(), sig) != 0 && errno != ESRCH)
      throw_errno(errno, ("kill(pid " + std::to_string(pid) + ", " + std::to_string(sig) + ")").c_str());
  }
};

}  // namespace detail

namespace {

using detail::ChildState;
using detail::throw_errno;

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// A pipe for one of the child's fds 0..2: `child` is the end dup2'd into the child
// (blocking, as programs expect), `parent` ours (non-blocking). Both are close-on-exec;
// dup2 clears that on the child's copy only.
struct StdioPipe {
  UniqueFd parent, child;
};

StdioPipe make_pipe(bool child_reads) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
  UniqueFd r(fds[0]), w(fds[1]);
  StdioPipe p;
  p.child = child_reads ? std::move(r) : std::move(w);
  p.parent = child_reads ? std::move(w) : std::move(r);
  if (p.child.get() <= 2) {
    // This process has fd 0, 1 or 2 closed and the pipe took it: move the child's end
    // above 2, so that the dup2s onto 0..2 in the child cannot clobber one another.
    const int d = ::fcntl(p.child.get(), F_DUPFD_CLOEXEC, 3);
    if (d < 0) throw_errno(errno, "fcntl(F_DUPFD_CLOEXEC)");
    p.child = UniqueFd(d);
  }
  const int fl = ::fcntl(p.parent.get(), F_GETFL);
  if (fl < 0 || ::fcntl(p.parent.get(), F_SETFL, fl | O_NONBLOCK) != 0) throw_errno(errno, "fcntl(O_NONBLOCK)");
  return p;
}

void check_no_nul(const std::string& s, const std::string& what) {
  if (s.find('\0') != std::string::npos) throw std::invalid_argument("Process::spawn: " + what + " holds a NUL byte");
}

// RAII for posix_spawn's two attribute objects.
struct SpawnSetup {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  SpawnSetup() {
    if (int e = posix_spawn_file_actions_init(&fa); e != 0) throw_errno(e, "posix_spawn_file_actions_init");
    if (int e = posix_spawnattr_init(&attr); e != 0) {
      posix_spawn_file_actions_destroy(&fa);
      throw_errno(e, "posix_spawnattr_init");
    }
  }
  ~SpawnSetup() {
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

void check(int e, const char* what) {
  if (e != 0) throw_errno(e, what);
}

// The child's fd `target` (0, 1 or 2) per `how`; `p` holds the pipe when how == pipe.
void plan_stdio(SpawnSetup& s, Stdio how, int target, const StdioPipe& p) {
  switch (how) {
    case Stdio::inherit:
      break;
    case Stdio::pipe:
      check(posix_spawn_file_actions_adddup2(&s.fa, p.child.get(), target), "posix_spawn_file_actions_adddup2");
      break;
    case Stdio::devnull:
      check(posix_spawn_file_actions_addopen(&s.fa, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0),
            "posix_spawn_file_actions_addopen");
      break;
    case Stdio::to_stdout:
      check(posix_spawn_file_actions_adddup2(&s.fa, 1, target), "posix_spawn_file_actions_adddup2");
      break;
  }
}

// Blames the working directory, if that is what made the spawn fail; else the program.
[[noreturn]] void throw_spawn_error(int e, const std::string& prog, const std::string& cwd) {
  if (!cwd.empty()) {
    struct stat st;
    int ce = 0;
    if (::stat(cwd.c_str(), &st) != 0) {
      ce = errno;
    } else if (!S_ISDIR(st.st_mode)) {
      ce = ENOTDIR;
    } else if (::access(cwd.c_str(), X_OK) != 0) {
      ce = errno;
    }
    if (ce != 0)
      throw std::system_error(ce, std::generic_category(), "spawn '" + prog + "': working directory '" + cwd + "'");
  }
  throw std::system_error(e, std::generic_category(), "spawn '" + prog + "'");
}

// Destroying a Process in a fibre: the child (sent SIGKILL) is reaped by this task. If
// the task is cancelled or dropped unrun, the destructor reaps it blocking.
struct Reaper {
  std::unique_ptr<ChildState> c;
  explicit Reaper(std::unique_ptr<ChildState> s) noexcept : c(std::move(s)) {}
  Reaper(Reaper&&) noexcept = default;
  Reaper(const Reaper&) = delete;
  ~Reaper() {
    if (c) c->reap_blocking();
  }
  void operator()() {
    try {
      (void)c->wait(0);
    } catch (const std::exception&) {
      // ECHILD (reaped behind our back) or an epoll failure: the destructor makes sure.
      return;
    }
    c.reset();
  }
};

void reap_later(std::unique_ptr<ChildState> c) noexcept {
  if (in_runtime()) {
    try {
      (void)spawn(TaskOptions{.name = "process-reaper"}, Reaper(std::move(c)));
    } catch (...) {
      // The runtime refused the task; the Reaper it was given reaped as it went.
    }
    return;
  }
  c->reap_blocking();
}

// Reads s to EOF, appending to `to`.
void drain(PipeStream& s, std::string& to) {
  constexpr std::size_t kChunk = 64 * 1024;
  for (;;) {
    const std::size_t old = to.size();
    to.resize(old + kChunk);
    const std::size_t n = s.read(to.data() + old, kChunk);
    to.resize(old + n);
    if (n == 0) return;
  }
}

}  // namespace

std::string ExitStatus::to_string() const {
  if (signal == 0) return "exit code " + std::to_string(code);
  std::string s = "killed by signal " + std::to_string(signal);
  if (const char* abbrev = ::sigabbrev_np(signal)) s += std::string(" (SIG") + abbrev + ")";
  return s;
}

Process::Process() noexcept = default;

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      st_(std::move(o.st_)),
      in_(std::move(o.in_)),
      out_(std::move(o.out_)),
      err_(std::move(o.err_)) {}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    release();
    pid_ = std::exchange(o.pid_, -1);
    st_ = std::move(o.st_);
    in_ = std::move(o.in_);
    out_ = std::move(o.out_);
    err_ = std::move(o.err_);
  }
  return *this;
}

Process::~Process() { release(); }

void Process::release() noexcept {
  in_.close();
  out_.close();
  err_.close();
  pid_ = -1;
  std::unique_ptr<ChildState> c = std::move(st_);
  if (!c) return;
  try {
    if (c->poll()) return;
    c->signal(SIGKILL);
    if (c->poll()) return;
  } catch (const std::exception&) {
    return;  // ECHILD: someone else reaped it; nothing is left to wait for
  }
  reap_later(std::move(c));
}

ChildState& Process::state(const char* what) const {
  if (!st_) throw std::logic_error(std::string("Process::") + what + ": no child (empty or moved-from Process)");
  return *st_;
}

Process Process::spawn(std::vector<std::string> argv, ProcessOptions opts) {
  if (argv.empty() || argv[0].empty()) throw std::invalid_argument("Process::spawn: no program given (argv is empty)");
  for (const std::string& a : argv) check_no_nul(a, "an argument");
  if (opts.in == Stdio::to_stdout || opts.out == Stdio::to_stdout)
    throw std::invalid_argument("Process::spawn: Stdio::to_stdout is only for stderr");
  check_no_nul(opts.cwd, "cwd");

  std::vector<std::string> env_store;
  std::vector<char*> envp;
  if (opts.env) {
    for (const auto& [k, v] : *opts.env) {
      if (k.empty() || k.find('=') != std::string::npos)
        throw std::invalid_argument("Process::spawn: bad environment variable name '" + k + "'");
      check_no_nul(k, "an environment name");
      check_no_nul(v, "the value of environment variable " + k);
      env_store.push_back(k + "=" + v);
    }
    for (std::string& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);

  StdioPipe pin, pout, perr;
  if (opts.in == Stdio::pipe) pin = make_pipe(true);
  if (opts.out == Stdio::pipe) pout = make_pipe(false);
  if (opts.err == Stdio::pipe) perr = make_pipe(false);

  pid_t pid;
  {
    SpawnSetup s;
    plan_stdio(s, opts.in, 0, pin);
    plan_stdio(s, opts.out, 1, pout);
    plan_stdio(s, opts.err, 2, perr);
    if (!opts.cwd.empty())
      check(posix_spawn_file_actions_addchdir_np(&s.fa, opts.cwd.c_str()), "posix_spawn_file_actions_addchdir_np");
    if (opts.close_fds)
      check(posix_spawn_file_actions_addclosefrom_np(&s.fa, 3), "posix_spawn_file_actions_addclosefrom_np");
    // The runtime's threads may block signals (block_signals, for signalfd) or ignore
    // SIGPIPE: the child starts with an empty mask and those at their default action.
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGXFSZ);
    check(posix_spawnattr_setsigmask(&s.attr, &none), "posix_spawnattr_setsigmask");
    check(posix_spawnattr_setsigdefault(&s.attr, &defaults), "posix_spawnattr_setsigdefault");
    check(posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
          "posix_spawnattr_setflags");
    const int e = ::posix_spawnp(&pid, args[0], &s.fa, &s.attr, args.data(), opts.env ? envp.data() : environ);
    if (e != 0) throw_spawn_error(e, argv[0], opts.cwd);
  }
  // The child has its copies; ours of its ends go now (its stdin sees EOF when we close ours).
  pin.child.reset();
  pout.child.reset();
  perr.child.reset();

  const int pfd = detail::pidfd_open(pid, detail::kPidfdNonblock);  // close-on-exec by default
  if (pfd < 0) {
    const int e = errno;
    // Not reaped yet, so the pid is still this child's.
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw_errno(e, "pidfd_open");
  }
  Process p;
  p.pid_ = pid;
  try {
    p.st_ = std::make_unique<ChildState>(pid, new detail::FdSource(pfd));
  } catch (...) {
    ::close(pfd);
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw;
  }
  // From here on a failure destroys p, which kills and reaps the child.
  if (pin.parent.get() >= 0) {
    p.in_ = PipeStream(pin.parent.get());
    (void)pin.parent.release();
  }
  if (pout.parent.get() >= 0) {
    p.out_ = PipeStream(pout.parent.get());
    (void)pout.parent.release();
  }
  if (perr.parent.get() >= 0) {
    p.err_ = PipeStream(perr.parent.get());
    (void)perr.parent.release();
  }
  return p;
}

std::optional<ExitStatus> Process::returncode() { return state("returncode").poll(); }

ExitStatus Process::wait(TimeLimit timeout) {
  ChildState& c = state("wait");
  return c.wait(detail::deadline_of(timeout));
}

void Process::send_signal(int sig) { state("send_signal").signal(sig); }

ProcessOutput Process::communicate(std::string_view input) {
  (void)state("communicate");
  if (!input.empty() && !in_.is_open())
    throw std::invalid_argument("Process::communicate: input given, but the child's stdin is not a pipe");
  ProcessOutput r;
  // Each transfer keeps its own error; none escapes its task or thread (CancelledError,
  // which is no std::exception, does: it ends that task cancelled, which is not reported).
  std::exception_ptr errs[3];
  auto feed = [&] {
    try {
      if (!input.empty()) in_.write_all(input);
    } catch (const std::system_error& e) {
      // The child closed its stdin or exited without reading everything: not an error.
      if (e.code() != std::errc::broken_pipe) errs[0] = std::current_exception();
    } catch (const std::exception&) {
      errs[0] = std::current_exception();
    }
    in_.close();
  };
  auto read_to_end = [&](PipeStream& s, std::string& to, std::exception_ptr& err) {
    try {
      if (s.is_open()) drain(s, to);
    } catch (const std::exception&) {
      err = std::current_exception();
    }
  };
  auto read_err = [&] { read_to_end(err_, r.err, errs[2]); };

  if (in_runtime()) {
    // stdin and stderr on tasks of their own, stdout on this fibre. If this fibre is
    // cancelled, the guards cancel and join the tasks (they use our locals).
    Task<> tin, terr;
    std::optional<detail::JoinGuard> gin, gerr;
    if (in_.is_open()) {
      tin = spindle::spawn(TaskOptions{.name = "communicate-stdin"}, feed);
      // Built in place: a temporary JoinGuard would cancel the task as it died.
      gin.emplace(tin.core_ptr(), std::source_location::current());
    }
    if (err_.is_open()) {
      terr = spindle::spawn(TaskOptions{.name = "communicate-stderr"}, read_err);
      gerr.emplace(terr.core_ptr(), std::source_location::current());
    }
    read_to_end(out_, r.out, errs[1]);
    if (gin) tin.get();
    if (gerr) terr.get();
  } else {
    // A thread outside the runtime: the same on short-lived threads (joined on every path).
    std::jthread tin, terr;
    if (in_.is_open()) tin = std::jthread(feed);
    if (err_.is_open()) terr = std::jthread(read_err);
    read_to_end(out_, r.out, errs[1]);
  }
  for (const std::exception_ptr& e : errs)
    if (e) std::rethrow_exception(e);
  r.status = wait();
  return r;
}

}  // namespace spindle
