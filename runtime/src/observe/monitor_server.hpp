// The monitor console (Options::monitor = "unix:PATH"): a line-based text protocol on a
// Unix stream socket, served by a thread of the runtime's own.
//
// Why a thread and not a task on loop 0: the console is for looking at a runtime that
// misbehaves, and the usual misbehaviour is a loop stuck in a long step. A thread answers
// then; a task on a stuck loop would not. Its commands only use what any foreign thread
// may (task dumps, metrics, cancel), so it needs no access a task would have.
//
// Protocol: the client sends one command per line; every answer is one or more lines
// ending with an empty line (answers never contain one), and so is the greeting sent on
// connect. Commands: ps, where ID, cancel ID, stats, help, quit. A bad command or argument
// is answered with a line starting "error: ", and the console goes on.
//
// Lifetime: the socket is bound (and a stale socket file at PATH replaced) when the
// runtime starts, so a bad address throws from the Runtime constructor; it is served
// from then until the end of Runtime::shutdown, when the socket file is removed (if it is
// still the one we made). At most kMaxClients connections at once.
//
// Who may connect: the console lists every task and cancels any, so each accepted
// connection's peer credentials (SO_PEERCRED, taken by the kernel at connect) are
// checked: only the process's effective uid, or root, is served; anyone else is closed
// without a word. The file mode (0600) alone would not do: an abstract socket has none.
//
// Slow clients: every connection is non-blocking and has an output buffer of its own.
// While a connection's answer is not all sent, the console reads no more of its
// commands (they wait in the kernel's socket buffer, and then the client's sends block):
// a client that sends and never reads holds at most one answer here and stalls only
// itself, never the other connections. It keeps its slot until it reads or closes, as
// an idle connection does.
#pragma once

#include <sys/types.h>

#include <string>
#include <thread>
#include <vector>

namespace spindle::detail {

class RuntimeImpl;

class MonitorServer {
 public:
  /// Parses `address` and binds and listens on it. Throws std::invalid_argument for an
  /// address that is not "unix:PATH" (or "unix:@name", Linux's abstract namespace),
  /// std::system_error if the socket cannot be made or PATH is held by a live server or
  /// by a file that is not a socket.
  MonitorServer(RuntimeImpl* rt, const std::string& address);
  ~MonitorServer();
  MonitorServer(const MonitorServer&) = delete;
  MonitorServer& operator=(const MonitorServer&) = delete;

  void start();          // starts serving (the thread)
  void stop() noexcept;  // stops, closes every connection, removes the socket file

  /// Answers one command line (without its newline), as the console would; `quit` is
  /// set when the client asked to close. Never throws: errors become "error: " lines.
  std::string answer(const std::string& line, bool& quit);

  static constexpr int kMaxClients = 16;
  static constexpr std::size_t kMaxLine = 4096;

 private:
  struct Client {
    int fd;
    std::string in;        // received, not yet answered (at most one partial line once
                           // the output below is empty)
    std::string out;       // the answer being sent
    std::size_t sent = 0;  // how much of out has gone
    bool closing = false;  // quit: close once out has gone
  };
  void serve() noexcept;
  bool serve_once(std::vector<Client>& clients);  // one poll round; true: stop
  void accept_one(std::vector<Client>& clients);
  bool pump(Client& c);  // answers c's whole lines, one at a time; false: drop c
  RuntimeImpl* rt_;
  uid_t owner_ = 0;   // the effective uid the console serves (besides root)
  std::string path_;  // "" for an abstract socket: no file to remove
  dev_t dev_ = 0;     // the socket file we made
  ino_t ino_ = 0;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop() wakes the thread's poll
  std::thread thread_;
};

}  // namespace spindle::detail
