// ProcessPool: worker processes that run registered functions.
//
// Owns:      the worker processes (pid + the parent's end of a socketpair each) and a
//            ThreadPool with one thread per worker: a call runs on one of those threads,
//            which checks a worker out, does blocking I/O with it, and checks it back in.
//            So at most `workers` processes are ever checked out, and the event loops
//            never block (the calling fibre waits on run_in_executor's future).
// Threads:   ProcessPoolState's fields are guarded by `mu`. A checked-out ProcWorker is
//            touched only by the thread that holds it.
// Registry: name -> (parameters' type tags, function, invoker), filled by process_function()
//            from static initialisers, in the caller and in every worker alike (the same
//            program). A worker finds each request's function by its name and compares the
//            tags before it decodes anything: they can differ only when the workers run
//            another program (ProcessPoolOptions::executable) that registered the name
//            otherwise, as the handle's types were checked when the caller compiled.
// Protocol:  process_wire.hpp: a request carries the name, the arguments' type tags
//            and their bytes; a response a status (ok, threw, unknown name, arguments
//            that do not match) and the result or the message.
//            All over a SOCK_STREAM socketpair; the parent sends with MSG_NOSIGNAL, so a
//            dead worker is an EPIPE, never a SIGPIPE.
// Failures:  EOF or an error on the socket, the worker's exit (its pidfd, polled with
//            the socket: a descendant of the worker may hold the socket open), or a
//            response that is not well formed: the worker is killed (SIGKILL) and
//            reaped, the call fails with BrokenProcessPool, and the next call starts a
//            new worker. A timeout does the same with TimeoutError.
// Worker:    serve_process_worker marks fd 3 close-on-exec and removes the marker from
//            its environment before any call runs, so programs the called functions
//            start neither inherit the socket nor take themselves for workers.
//
// Shutdown (shutdown(wait)):
//   1. set `shut` (later calls throw BrokenExecutor), shut the call threads down;
//   2. with wait, the call threads are joined: no worker is checked out any more;
//   3. close every idle worker's socket (it sees EOF and exits) and reap it; a worker
//      checked out by a call still running (wait=false) is ended by that call's thread
//      when it checks it back in.
#include <spindle/executors/process_pool.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cxxabi.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include <spindle/errors.hpp>

#include "process_wire.hpp"

extern char** environ;

namespace spindle {

namespace detail {

namespace {

struct Registered {
  std::string signature;  // the parameters' type tags (signature_of)
  void (*fn)();           // the function, to tell a second registration of it from a clash
  ProcessInvoker invoke;
};

std::unordered_map<std::string, Registered>& registry() {
  static std::unordered_map<std::string, Registered> r;
  return r;
}

// A signature (type tags, each ended by '\0') as C++: "(int, double)".
std::string signature_text(const std::string& sig) {
  std::string out = "(";
  for (std::size_t at = 0; at < sig.size();) {
    std::size_t end = sig.find('\0', at);
    if (end == std::string::npos) end = sig.size();
    const std::string tag = sig.substr(at, end - at);
    int rc = -1;
    char* readable = abi::__cxa_demangle(tag.c_str(), nullptr, nullptr, &rc);
    std::string name = rc == 0 && readable ? readable : tag;
    std::free(readable);
    // The one name every user meets, spelt as they wrote it.
    for (const char* longname : {"std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
                                 "std::basic_string<char, std::char_traits<char>, std::allocator<char> >"})
      for (std::size_t p; (p = name.find(longname)) != std::string::npos;)
        name.replace(p, std::strlen(longname), "std::string");
    if (out.size() > 1) out += ", ";
    out += name;
    at = end + 1;
  }
  return out + ")";
}

constexpr const char* kMarker = "SPINDLE_PROCESS_WORKER";
constexpr int kWorkerFd = 3;

iovec buf(const void* p, std::size_t n) noexcept { return iovec{const_cast<void*>(p), n}; }

// Through syscall(2): glibc 2.36's <sys/pidfd.h> lacks the extern "C" for C++. The
// pidfd is close-on-exec (always, for pidfd_open).
int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
  return int(::syscall(SYS_pidfd_open, pid, 0u));
#else
  (void)pid;
  return -1;
#endif
}

// Waits until fd is ready for `events` (Io::ok; also when it hung up or failed: the
// send or recv that follows says which), the worker behind it has exited (its pidfd is
// readable: Io::eof), or the deadline passes (0: none). The exit counts only when fd is
// not ready: whatever the worker sent before it died is already queued on our end of the
// socket and is read first. Without it, a dead worker whose socket a descendant still
// holds (a fork without exec in the called function) would look alive until that
// descendant exits.
[[nodiscard]] Io wait_ready(int fd, short events, int pidfd, int64_t deadline_ns) {
  for (;;) {
    int timeout_ms = -1;
    if (deadline_ns) {
      const int64_t left = deadline_ns - monotonic_ns();
      if (left <= 0) return Io::timeout;
      timeout_ms = poll_ms(left);
    }
    pollfd pf[2] = {{fd, events, 0}, {pidfd, POLLIN, 0}};
    const int pr = ::poll(pf, pidfd >= 0 ? 2 : 1, timeout_ms);
    if (pr < 0) {
      if (errno == EINTR) continue;
      return Io::error;
    }
    if (pf[0].revents) return Io::ok;
    if (pidfd >= 0 && pf[1].revents) return Io::eof;
  }
}

// Sends every byte of the buffers, in order, gathered into as few sendmsg calls as the
// socket takes: one for a small message, so the peer wakes once per message, not once
// per field. With a pidfd or a deadline (the pool's side) it never blocks past the
// worker's exit or the deadline; without (the worker's side) it blocks.
[[nodiscard]] Io send_all(int fd, int pidfd, int64_t deadline_ns, std::initializer_list<iovec> bufs) {
  iovec iov[4];
  if (bufs.size() > std::size(iov)) return Io::error;  // callers pass at most 4
  std::size_t cnt = 0;
  for (const iovec& b : bufs)
    if (b.iov_len > 0) iov[cnt++] = b;
  const bool watch = pidfd >= 0 || deadline_ns != 0;
  std::size_t i = 0;
  while (i < cnt) {
    msghdr m{};
    m.msg_iov = iov + i;
    m.msg_iovlen = cnt - i;
    const ssize_t r = ::sendmsg(fd, &m, MSG_NOSIGNAL | (watch ? MSG_DONTWAIT : 0));
    if (r < 0) {
      if (errno == EINTR) continue;
      if (watch && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (const Io io = wait_ready(fd, POLLOUT, pidfd, deadline_ns); io != Io::ok) return io;
        continue;
      }
      return Io::error;
    }
    // Skip what went out: whole buffers, then part of the next one.
    std::size_t n = std::size_t(r);
    while (i < cnt && n >= iov[i].iov_len) n -= iov[i++].iov_len;
    if (i < cnt) {
      iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + n;
      iov[i].iov_len -= n;
    }
  }
  return Io::ok;
}

// Receives exactly n bytes, before deadline_ns (0: none) and the exit of the worker
// behind pidfd (-1: not watched; see wait_ready).
[[nodiscard]] Io recv_all(int fd, int pidfd, void* p, std::size_t n, int64_t deadline_ns) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    if (deadline_ns || pidfd >= 0)
      if (const Io io = wait_ready(fd, POLLIN, pidfd, deadline_ns); io != Io::ok) return io;
    const ssize_t r = ::recv(fd, c, n, 0);
    if (r == 0) return Io::eof;
    if (r < 0) {
      if (errno == EINTR) continue;
      return Io::error;
    }
    c += r;
    n -= std::size_t(r);
  }
  return Io::ok;
}

struct ProcWorker {
  pid_t pid = -1;
  int fd = -1;
  int pidfd = -1;  // -1 if the kernel has no pidfd_open (then only EOF tells a death)
};

// Kills (if asked), closes and reaps a worker; returns a description of how it ended.
std::string end_worker(ProcWorker& w, bool kill) {
  if (kill) ::kill(w.pid, SIGKILL);
  ::close(w.fd);
  if (w.pidfd >= 0) ::close(w.pidfd);
  int status = 0;
  while (::waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
  }
  w = ProcWorker{};
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended";
}

}  // namespace

void register_process_invoker(std::string name, std::string signature, void (*fn)(), ProcessInvoker inv) {
  if (name.empty()) throw std::invalid_argument("process_function: empty name");
  const auto [it, fresh] = registry().try_emplace(name, Registered{signature, fn, std::move(inv)});
  // The same function under the same name again: a handle defined in a header without
  // `inline` (a const at namespace scope is one object per file) registers once per file.
  if (!fresh && (it->second.fn != fn || it->second.signature != signature))
    throw std::invalid_argument("process_function: '" + name + "' is already registered for another function");
}

struct ProcessPoolState {
  ProcessPoolOptions opts;
  std::mutex mu;
  std::vector<ProcWorker> idle;  // guarded by mu
  std::size_t alive = 0;         // guarded by mu: idle + checked out
  bool shut = false;             // guarded by mu

  ProcWorker checkout() {
    {
      std::lock_guard lk(mu);
      if (!idle.empty()) {
        ProcWorker w = idle.back();
        idle.pop_back();
        return w;
      }
    }
    ProcWorker w = spawn();
    std::lock_guard lk(mu);
    ++alive;
    return w;
  }
  void checkin(ProcWorker w) {
    {
      std::lock_guard lk(mu);
      if (!shut) {
        idle.push_back(w);
        return;
      }
      --alive;
    }
    (void)end_worker(w, false);
  }
  std::string lost(ProcWorker& w, bool kill) {
    std::string how = end_worker(w, kill);
    std::lock_guard lk(mu);
    --alive;
    return how;
  }

  ProcWorker spawn() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw std::system_error(errno, std::generic_category(), "socketpair");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    // dup2 clears FD_CLOEXEC on the copy: only fd 3 crosses the exec.
    posix_spawn_file_actions_adddup2(&fa, sv[1], kWorkerFd);
    std::vector<std::string> env_store;
    std::vector<char*> env;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, kMarker, std::strlen(kMarker)) != 0) env.push_back(*e);
    env_store.push_back(std::string(kMarker) + "=" + std::to_string(kWorkerFd));
    env.push_back(env_store.back().data());
    env.push_back(nullptr);
    std::string exe = opts.executable;
    char arg1[] = "--spindle-process-worker";
    char* argv[] = {exe.data(), arg1, nullptr};
    pid_t pid;
    const int rc = ::posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv, env.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(sv[1]);
    if (rc != 0) {
      ::close(sv[0]);
      throw std::system_error(rc, std::generic_category(), "posix_spawn(" + exe + ")");
    }
    // Not reaped yet, so pid cannot have been reused.
    return ProcWorker{pid, sv[0], open_pidfd(pid)};
  }
};

// A worker checked out for one call. The call gives it back (checkin) when the exchange
// ended cleanly, or ends it (kill and reap) when the exchange failed; a lease destroyed
// without either (an exception between checkout and the end of the exchange, e.g. an
// allocation failing while a large reply arrives) kills and reaps its worker, so that no
// socket, pidfd or child process outlives the call and `alive` stays true.
class WorkerLease {
 public:
  explicit WorkerLease(ProcessPoolState& st) : st_(st), w_(st.checkout()) {}
  WorkerLease(const WorkerLease&) = delete;
  WorkerLease& operator=(const WorkerLease&) = delete;
  ~WorkerLease() {
    if (w_.pid >= 0) (void)st_.lost(w_, true);
  }

  [[nodiscard]] const ProcWorker& worker() const noexcept { return w_; }
  void give_back() {
    st_.checkin(w_);  // strong guarantee: if it throws, the lease still owns the worker
    w_ = ProcWorker{};
  }
  /// Kills (if asked) and reaps the worker; returns how it ended.
  [[nodiscard]] std::string end(bool kill) { return st_.lost(w_, kill); }

 private:
  ProcessPoolState& st_;
  ProcWorker w_;
};

std::string process_pool_roundtrip(const std::shared_ptr<ProcessPoolState>& st, const std::string& name,
                                   std::string signature, std::string request) {
  // A timeout that has passed before the call began: no worker is taken, the call never
  // runs (nothing it could do without waiting for the worker's reply).
  if (st->opts.timeout.expired()) throw TimeoutError("ProcessPool: call '" + name + "' timed out (not started)");
  WorkerLease lease(*st);
  const ProcWorker& w = lease.worker();
  const int64_t deadline = deadline_of(st->opts.timeout);
  const uint32_t nlen = uint32_t(name.size());
  const uint32_t slen = uint32_t(signature.size());
  const uint64_t plen = request.size();
  char head[16];
  std::memcpy(head, &nlen, 4);
  std::memcpy(head + 4, &slen, 4);
  std::memcpy(head + 8, &plen, 8);
  Io io = send_all(w.fd, w.pidfd, deadline,
                   {buf(head, sizeof head), buf(name.data(), name.size()), buf(signature.data(), signature.size()),
                    buf(request.data(), request.size())});
  request = std::string();  // 64 MiB payloads: free it while we wait
  uint8_t status = 0;
  std::string body;
  auto recv = [&](void* p, std::size_t n) { return recv_all(w.fd, w.pidfd, p, n, deadline); };
  if (io == Io::ok) io = read_response(recv, status, body);
  if (io != Io::ok) {
    const std::string how = lease.end(true);
    if (io == Io::timeout) throw TimeoutError("ProcessPool: call '" + name + "' timed out (its worker was killed)");
    throw BrokenProcessPool("ProcessPool: the worker running '" + name + "' died (" + how + ")");
  }
  lease.give_back();
  if (status == 1) throw ProcessError(name + ": " + body);
  if (status == 2) throw std::invalid_argument("ProcessPool: no function is registered as '" + name + "'");
  if (status == 3) throw std::invalid_argument("ProcessPool: " + body);
  return body;
}

}  // namespace detail

void serve_process_worker() {
  const char* m = std::getenv(detail::kMarker);
  if (!m) return;
  const int fd = std::atoi(m);
  // Nothing the called functions start may take either for its own: a program they run
  // (system(), posix_spawn) neither inherits the pool's socket (which would keep it open
  // after this worker died, hiding the death from the pool) nor believes it is a worker
  // (it would serve, or wait for, requests on a socket that is not its).
  ::unsetenv(detail::kMarker);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  using detail::Io;
  for (;;) {
    std::string name, signature, payload;
    auto recv = [&](void* p, std::size_t n) { return detail::recv_all(fd, -1, p, n, 0); };
    const Io io = detail::read_request(recv, name, signature, payload);
    if (io == Io::eof && name.empty() && signature.empty() && payload.empty()) std::_Exit(0);  // the pool closed us
    if (io != Io::ok) std::_Exit(1);
    uint8_t status = 0;
    std::string body;
    const auto it = detail::registry().find(name);
    if (it == detail::registry().end()) {
      status = 2;
    } else if (signature != it->second.signature) {
      status = 3;
      body = "'" + name + "' takes " + detail::signature_text(it->second.signature) + ", called with " +
             detail::signature_text(signature);
    } else {
      try {
        ByteReader in(payload.data(), payload.size());
        ByteWriter out;
        it->second.invoke(in, out);
        body = std::move(out.bytes());
      } catch (const detail::BadArguments& e) {
        status = 3;
        body = "the arguments of '" + name + "' " + detail::signature_text(signature) + " do not decode: " + e.what();
      } catch (const std::exception& e) {
        status = 1;
        body = e.what();
      } catch (...) {
        status = 1;
        body = "unknown exception";
      }
    }
    payload = std::string();
    const uint64_t len = body.size();
    using detail::buf;
    if (detail::send_all(fd, -1, 0, {buf(&status, 1), buf(&len, 8), buf(body.data(), body.size())}) != Io::ok)
      std::_Exit(1);
  }
}

std::string ProcessPool::roundtrip(const std::string& name, std::string signature, std::string request) {
  return run_in_executor(*calls_, [st = st_, n = name, sig = std::move(signature), req = std::move(request),
                                   sink = detail::job_trace_sink()]() mutable {
    detail::JobTraceScope scope(std::move(sink), "process pool job");  // recorded while tracing
    return detail::process_pool_roundtrip(st, n, std::move(sig), std::move(req));
  });
}

unsigned ProcessPoolOptions::default_workers() noexcept { return std::max(1u, std::thread::hardware_concurrency()); }

ProcessPool::ProcessPool(ProcessPoolOptions opts) {
  if (opts.workers == 0) throw std::invalid_argument("ProcessPool: workers must be at least 1");
  if (opts.executable.empty()) throw std::invalid_argument("ProcessPool: empty executable path");
  st_ = std::make_shared<detail::ProcessPoolState>();
  st_->opts = std::move(opts);
  // Call threads never idle out while the pool lives: each would take its socket's
  // worker with it only through checkin, which keeps workers anyway.
  calls_ = std::make_unique<ThreadPool>(st_->opts.workers, std::chrono::milliseconds(60'000));
}

ProcessPool::~ProcessPool() { shutdown(true); }

void ProcessPool::shutdown(bool wait) {
  {
    std::lock_guard lk(st_->mu);
    st_->shut = true;
  }
  calls_->shutdown(wait);
  std::vector<detail::ProcWorker> idle;
  {
    std::lock_guard lk(st_->mu);
    idle.swap(st_->idle);
    st_->alive -= idle.size();
  }
  for (auto& w : idle) (void)detail::end_worker(w, false);
}

std::size_t ProcessPool::processes() const {
  std::lock_guard lk(st_->mu);
  return st_->alive;
}

unsigned ProcessPool::workers() const noexcept { return st_->opts.workers; }

}  // namespace spindle
