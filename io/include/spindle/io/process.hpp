// Child processes (asyncio.create_subprocess_exec): Process::spawn starts a program with
// its stdin, stdout and stderr each inherited, sent to /dev/null, or piped to a stream the
// fibres read and write like a socket; wait() and communicate() suspend only the calling
// fibre.
//
//   auto p = spindle::Process::spawn({"sort"}, {.in = spindle::Stdio::pipe, .out = spindle::Stdio::pipe});
//   auto [out, err, status] = p.communicate("b\na\n");   // out == "a\nb\n", status.success()
//
// How a child starts: posix_spawnp (glibc clones with CLONE_VM|CLONE_VFORK and execs at
// once: no code of ours runs in the child, so it is safe beside the runtime's threads).
// An exec failure (no such program, not executable) comes back from posix_spawnp and is
// thrown by spawn() as std::system_error naming the program. The program is looked up in
// this process's PATH when argv[0] has no '/'. In the child:
//   - the signal mask is empty and SIGPIPE / SIGXFSZ are at their default action, whatever
//     the runtime's threads block (see block_signals) or ignore;
//   - only fds 0, 1 and 2 are open (close_fds, the default): pipes and sockets of the
//     parent do not leak into it;
//   - the environment is this process's, or exactly ProcessOptions::env.
//
// The child's exit is awaited through a pidfd (pidfd_open), registered with the calling
// worker's epoll reactor like any socket; signals are sent through it too, so kill()
// can never hit an unrelated process that reused the pid. Do not reap spindle's
// children behind its back (waitpid(-1), SIGCHLD set to SIG_IGN): wait() then throws
// std::system_error(ECHILD).
//
// Destroying (or move-assigning over) a Process whose child has not been reaped closes
// its pipes, KILLS THE CHILD (SIGKILL) and reaps it: in the background when destroyed in
// a fibre (a small task named "process-reaper" waits on the pidfd through the reactor,
// so the destructor does not block its worker), or before the destructor returns when
// destroyed outside a runtime. If the runtime shuts down while that task waits, the task
// reaps synchronously (the child was SIGKILLed, so that is brief). Either way no zombie
// is left and no fd leaks. To let a child finish, wait() for it first.
//
// Thread rules: a Process may be used from any fibre on any worker and from threads
// outside the runtime (which then block). wait(), returncode(), kill() and the streams
// may be used by different fibres at once (one waits while another kills); at most one
// fibre may be in wait() or communicate() at a time (a second waiter gets RuntimeError),
// and each stream follows SocketStream's rules. Moving or destroying a Process while
// another fibre uses it is a data race.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io/stream.hpp>

namespace spindle {

/// One end of a pipe to a child process: a SocketStream read with read(2) and written
/// with write(2). Reads, read_line, read_until, write_all, timeouts and cancellation work
/// as on a socket. Writing after the child closed its stdin (or exited) is
/// std::system_error(EPIPE), never SIGPIPE. shutdown_write() closes the pipe (the child
/// reads EOF).
class PipeStream : public SocketStream {
 public:
  PipeStream() noexcept { pipe_ = true; }
  /// Adopts one end of a pipe (made non-blocking and close-on-exec here). Throws
  /// std::system_error.
  explicit PipeStream(int fd) : SocketStream(fd) { pipe_ = true; }
};

/// What a child's stdin, stdout or stderr is connected to.
enum class Stdio : uint8_t {
  inherit,    ///< this process's own fd 0, 1 or 2
  pipe,       ///< a pipe: Process::in() / out() / err() is the other end
  devnull,    ///< /dev/null
  to_stdout,  ///< stderr only: wherever the child's stdout goes (asyncio.subprocess.STDOUT)
};

struct ProcessOptions {
  Stdio in = Stdio::inherit;
  Stdio out = Stdio::inherit;
  Stdio err = Stdio::inherit;
  /// The child's whole environment; std::nullopt: this process's (environ).
  std::optional<std::map<std::string, std::string>> env{};
  /// The child's working directory; "": this process's.
  std::string cwd{};
  /// Close every fd above 2 in the child (Python's close_fds). With false, fds without
  /// FD_CLOEXEC are inherited (spindle's own fds are all close-on-exec).
  bool close_fds = true;
};

/// How a child ended: an exit code, or the signal that terminated it.
struct ExitStatus {
  int code = 0;    ///< the exit code (0..255), when it exited; 0 if killed
  int signal = 0;  ///< the terminating signal; 0 if it exited

  bool exited() const noexcept { return signal == 0; }
  /// Exited with code 0.
  bool success() const noexcept { return signal == 0 && code == 0; }
  /// asyncio's returncode: the exit code, or -signal.
  int returncode() const noexcept { return signal != 0 ? -signal : code; }
  /// "exit code 3" or "killed by signal 9 (SIGKILL)".
  std::string to_string() const;
  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

/// What communicate() returns.
struct ProcessOutput {
  std::string out;  ///< everything the child wrote to stdout ("" unless piped)
  std::string err;  ///< everything it wrote to stderr ("" unless piped)
  ExitStatus status;
};

namespace detail {
struct ChildState;
}

class Process {
 public:
  /// Starts argv[0] with arguments argv (asyncio.create_subprocess_exec). Throws
  /// std::invalid_argument for an empty argv, an argument or environment entry with a
  /// NUL byte, an environment name that is empty or holds '=', or Stdio::to_stdout
  /// anywhere but `err`; std::system_error naming the program when it cannot be run
  /// (ENOENT, EACCES, ...) and naming the directory when `cwd` is unusable; and
  /// std::system_error from pipe2 / pidfd_open (then no child is left running). Any
  /// fibre or thread.
  static Process spawn(std::vector<std::string> argv, ProcessOptions opts = {});

  Process() noexcept;
  Process(Process&& o) noexcept;
  /// Releases the current child as the destructor does, then takes o's.
  Process& operator=(Process&& o) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  /// Closes the pipes; a child not yet reaped is killed and reaped (see the file comment).
  ~Process();

  /// The child's pid (-1 for an empty Process). It stays the child's until it is reaped.
  pid_t pid() const noexcept { return pid_; }
  /// The exit status once the child has ended (it is reaped then, if it was not yet);
  /// std::nullopt while it runs. Never waits. Throws std::system_error (ECHILD if reaped
  /// behind spindle's back), std::logic_error for an empty Process.
  std::optional<ExitStatus> returncode();

  /// Waits until the child ends, reaps it and returns its status (at once if it ended
  /// already; the same status on every later call). No timeout by default; zero or
  /// negative only looks whether it has ended. Throws
  /// TimeoutError at the timeout and CancelledError if the calling task is cancelled —
  /// either way the child is left running, unreaped, and may be killed and waited for
  /// later; RuntimeError if another fibre is already waiting; std::system_error (ECHILD);
  /// std::logic_error for an empty Process.
  ExitStatus wait(TimeLimit timeout = {});

  /// Writes `input` to the child's stdin and closes it, while reading its stdout and
  /// stderr to EOF, all at once (a child that fills both output pipes before reading its
  /// input does not deadlock), then waits for it (asyncio communicate). A pipe to stdin
  /// is closed even with no input; a child that exits without reading all its input is
  /// not an error. Streams that are not piped read as "". Throws std::invalid_argument
  /// if `input` is not empty and stdin is not piped; std::system_error from the pipes;
  /// CancelledError if the calling task is cancelled (the child keeps running; what was
  /// read is lost; the streams are left in the state cancellation leaves a SocketStream
  /// in). Bound it with spindle::timeout(d, [&] { return p.communicate(in); }). From a
  /// thread outside the runtime the three transfers run on short-lived threads.
  ProcessOutput communicate(std::string_view input = {});

  /// Sends `sig` to the child; does nothing once it has been reaped. Throws
  /// std::system_error (EINVAL for a bad signal), std::logic_error for an empty Process.
  void send_signal(int sig);
  /// send_signal(sig), SIGKILL by default (asyncio kill()).
  void kill(int sig = SIGKILL) { send_signal(sig); }
  /// send_signal(SIGTERM).
  void terminate() { send_signal(SIGTERM); }

  /// The parent's ends of the pipes (asyncio proc.stdin / stdout / stderr). A stream that
  /// was not requested as Stdio::pipe is not open (its operations throw EBADF).
  PipeStream& in() noexcept { return in_; }
  PipeStream& out() noexcept { return out_; }
  PipeStream& err() noexcept { return err_; }

 private:
  detail::ChildState& state(const char* what) const;
  void release() noexcept;

  pid_t pid_ = -1;
  std::unique_ptr<detail::ChildState> st_;
  PipeStream in_, out_, err_;
};

}  // namespace spindle
