// start_server and Server: accept tasks that spawn one handler task per connection.
//
// ServerState is shared by the Server handles, the accept tasks and the connection
// tasks. Threads: `mu` guards closing, active, next_id, conns, acceptors and
// acceptor_started (an accept task may stop the server before start_server has stored
// every acceptor); listeners[i] is used only by accept task i (which closes it when it
// ends); everything else is fixed once start_server returns.
//
// Only accept tasks that have started are cancelled: a task cancelled before it starts
// never runs its body, so it would neither close its listener (clients would still
// connect, into a backlog nobody accepts) nor release its callable, whose reference to
// this state would then keep the state and its listeners alive for ever through
// `acceptors`. An accept task that starts after the server stopped returns at once.
//
// Shutdown of a server: (1) close() marks it closing (no new connection is registered
// after this: an accept racing with it drops its stream), completes `closed_fut` and
// cancels the accept tasks; (2) each accept task closes its listener as it unwinds;
// (3) the last connection to end, or close() itself if none is left, completes
// `idle_fut`; wait_closed() waits for (2) and (3).
//
// An accept loop that fails (on_accept_error threw, bad_alloc, spawn refused: anything
// but its own cancellation) stops the server the same way, with the error: closed_fut
// gets the exception, so is_serving() turns false and serve_forever() / wait_closed()
// rethrow it; the accept task itself ends normally (the error is delivered once, by the
// server, not also as the task's "never retrieved"; a Future nobody waited on still
// reports it when the server goes away).
#include <spindle/io/tcp.hpp>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include <spindle/future.hpp>
#include <spindle/runtime.hpp>
#include <spindle/timers.hpp>

#include <spindle/internal/runtime_services.hpp>

namespace spindle {
namespace detail {

struct ServerState : std::enable_shared_from_this<ServerState> {
  std::function<void(TcpStream)> handler;
  ServerOptions opts;
  std::vector<SocketAddress> addrs;
  std::vector<TcpListener> listeners;
  std::vector<Task<>> acceptors;       // guarded by mu
  std::vector<char> acceptor_started;  // guarded by mu; sized before any accept task starts
  Future<> closed_fut;                 // done once close() ran, or holds the error that stopped the server
  Future<> idle_fut;                   // done once closing and no connection is left

  std::mutex mu;
  bool closing = false;    // guarded by mu
  std::size_t active = 0;  // guarded by mu
  uint64_t next_id = 0;    // guarded by mu
  // A connection's task, and whether close_clients() ran before the handle was stored
  // (spawn_connection then cancels it itself, so no connection escapes the close).
  struct Conn {
    Task<> task;
    bool cancel = false;
  };
  std::unordered_map<uint64_t, Conn> conns;  // guarded by mu
  bool idle_set = false;                     // guarded by mu

  void set_idle_locked() {
    if (!idle_set && closing && active == 0) {
      idle_set = true;
      idle_fut.set_result();
    }
  }

  // Held by a connection task's callable: however the task ends (or if it never
  // starts), the connection is counted out exactly once.
  struct ConnGuard {
    std::shared_ptr<ServerState> st;
    uint64_t id;
    ConnGuard(std::shared_ptr<ServerState> s, uint64_t i) noexcept : st(std::move(s)), id(i) {}
    ConnGuard(ConnGuard&& o) noexcept : st(std::move(o.st)), id(o.id) {}
    ConnGuard(const ConnGuard&) = delete;
    ~ConnGuard() {
      if (!st) return;
      Task<> mine;
      std::lock_guard lk(st->mu);
      if (auto it = st->conns.find(id); it != st->conns.end()) {
        mine = std::move(it->second.task);
        st->conns.erase(it);
      }
      --st->active;
      st->set_idle_locked();
    }
  };

  void spawn_connection(TcpStream s) {
    uint64_t id;
    {
      std::lock_guard lk(mu);
      if (closing) return;  // closed meanwhile: drop (close) the connection
      id = next_id++;
      ++active;
      conns.emplace(id, Conn{});
    }
    Task<> t =
        spawn(TaskOptions{.name = opts.connection_name},
              [g = ConnGuard(shared_from_this(), id), s = std::move(s)]() mutable { g.st->handler(std::move(s)); });
    bool cancel = false;
    {
      std::lock_guard lk(mu);
      if (auto it = conns.find(id); it != conns.end()) {
        it->second.task = t;
        cancel = it->second.cancel;
      }
    }
    if (cancel) t.cancel("server closed its clients");
  }

  // close() and a failing accept loop (err set; `self` is that loop's index). Returns
  // false if the server was already closing (then err is dropped: the server stopped
  // for another reason first, and a loop failing while it unwinds is no news).
  bool stop(std::exception_ptr err, std::size_t self) {
    std::vector<Task<>> others;
    others.reserve(listeners.size());  // allocated before `closing` is set, not after
    {
      std::lock_guard lk(mu);
      if (closing) return false;
      closing = true;
      set_idle_locked();
      for (std::size_t j = 0; j < acceptors.size(); ++j)
        if (j != self && acceptor_started[j]) others.push_back(acceptors[j]);
    }
    if (err)
      closed_fut.set_exception(std::move(err));
    else
      closed_fut.set_result();
    for (auto& a : others) a.cancel(err ? "server stopped by an accept error" : "server closed");
    return true;
  }

  void accept_loop(std::size_t i) {
    TcpListener& l = listeners[i];
    struct CloseOnExit {
      TcpListener& l;
      ~CloseOnExit() { l.close(); }
    } coe{l};
    {
      std::lock_guard lk(mu);
      if (closing) return;  // stopped before this task started: it is not cancelled
      acceptor_started[i] = true;
    }
    // Caught inside coe's scope: the server is marked stopped before its listener
    // closes, so a client refused by the closed listener finds is_serving() false.
    try {
      accept_until_closed(l, i);
    } catch (const CancelledError&) {
      throw;  // close() or the runtime's shutdown: the normal end
    } catch (...) {
      stop(std::current_exception(), i);
    }
  }

  void accept_until_closed(TcpListener& l, std::size_t i) {
    for (;;) {
      TcpStream s;
      try {
        s = l.accept();
      } catch (const std::system_error& e) {
        if (e.code().value() == EBADF) return;
        // EMFILE, ENFILE, ENOBUFS, ENOMEM...: report, back off, try again (no spinning).
        if (opts.on_accept_error) {
          opts.on_accept_error(e);
        } else {
          std::fprintf(stderr, "spindle: accept on %s failed: %s; retrying in %lld ms\n", addrs[i].to_string().c_str(),
                       e.what(), static_cast<long long>(opts.accept_backoff.count()));
        }
        sleep(opts.accept_backoff);
        continue;
      }
      if (opts.nodelay) {
        try {
          s.set_nodelay(true);
        } catch (const std::system_error&) {
          continue;  // the connection is already dead (ECONNRESET, EINVAL): drop it
        }
      }
      spawn_connection(std::move(s));
    }
  }
};

}  // namespace detail

Server start_server(std::function<void(TcpStream)> handler, std::string_view host, uint16_t port, ServerOptions opts) {
  detail::RuntimeImpl* rt = detail::current_runtime();
  if (!rt) throw RuntimeError("start_server: no running runtime on this thread");
  if (!handler) throw std::invalid_argument("start_server: empty handler");
  auto st = std::make_shared<detail::ServerState>();
  st->handler = std::move(handler);
  st->opts = std::move(opts);
  const std::size_t n = st->opts.reuse_port ? detail::runtime_loops(rt) : 1;
  const ListenOptions lo{.backlog = st->opts.backlog, .reuse_port = st->opts.reuse_port};
  st->listeners.reserve(n);
  st->listeners.emplace_back(host, port, lo);
  st->addrs.push_back(st->listeners[0].local_address());
  for (std::size_t i = 1; i < n; ++i) {
    st->listeners.emplace_back(st->addrs[0], lo);  // same address and (chosen) port
    st->addrs.push_back(st->addrs[0]);
  }
  st->acceptors.reserve(n);
  st->acceptor_started.assign(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    TaskOptions to{.name = "accept " + st->addrs[i].to_string(),
                   .pinned = st->opts.reuse_port,
                   .loop = st->opts.reuse_port ? int(i) : -1};
    Task<> t = spawn(to, [st, i] { st->accept_loop(i); });
    bool cancel;
    {
      std::lock_guard lk(st->mu);
      st->acceptors.push_back(t);
      // An earlier accept loop already failed and stop() could not see this task: cancel
      // it if it has started (if not, it returns as it starts).
      cancel = st->closing && st->acceptor_started[i];
    }
    if (cancel) t.cancel("server stopped by an accept error");
  }
  return Server(std::move(st));
}

namespace {
detail::ServerState& state(const std::shared_ptr<detail::ServerState>& s) {
  if (!s) throw InvalidStateError("empty spindle::Server");
  return *s;
}
}  // namespace

uint16_t Server::port() const { return state(s_).addrs.at(0).port(); }

std::vector<SocketAddress> Server::addresses() const { return state(s_).addrs; }

bool Server::is_serving() const noexcept {
  if (!s_) return false;
  std::lock_guard lk(s_->mu);
  return !s_->closing;
}

std::size_t Server::connections() const noexcept {
  if (!s_) return 0;
  std::lock_guard lk(s_->mu);
  return s_->active;
}

void Server::close() { (void)state(s_).stop(nullptr, std::size_t(-1)); }

void Server::close_clients() {
  auto& st = state(s_);
  std::vector<Task<>> ts;
  {
    std::lock_guard lk(st.mu);
    for (auto& [id, c] : st.conns) {
      if (c.task)
        ts.push_back(c.task);
      else
        c.cancel = true;  // spawned but not stored yet: spawn_connection cancels it
    }
  }
  for (auto& t : ts) t.cancel("server closed its clients");
}

void Server::serve_forever() {
  auto& st = state(s_);
  try {
    (void)st.closed_fut.core_ptr()->wait_done_until(0, std::source_location::current());
  } catch (const CancelledError&) {
    close();
    throw;
  }
  st.closed_fut.core_ptr()->check_outcome("serve_forever");  // the error that stopped it
}

void Server::wait_closed() {
  auto& st = state(s_);
  const auto where = std::source_location::current();
  // wait_done_until raises our own cancellation without passing it on to what we wait for.
  (void)st.closed_fut.core_ptr()->wait_done_until(0, where);
  std::vector<Task<>> acceptors;
  {
    std::lock_guard lk(st.mu);
    acceptors = st.acceptors;
  }
  for (auto& a : acceptors) (void)a.core_ptr()->wait_done_until(0, where);
  (void)st.idle_fut.core_ptr()->wait_done_until(0, where);
  st.closed_fut.core_ptr()->check_outcome("wait_closed");  // the error that stopped it
}

}  // namespace spindle
