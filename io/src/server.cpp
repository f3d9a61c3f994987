// start_server and Server: accept tasks that spawn one handler task per connection.
//
// ServerState is shared by the Server handles, the accept tasks and the connection
// tasks. Threads: `mu` guards closing, active, next_id and conns; listeners[i] is used
// only by accept task i (which closes it when it ends); everything else is fixed once
// start_server returns.
//
// Shutdown of a server: (1) close() marks it closing (no new connection is registered
// after this: an accept racing with it drops its stream), completes `closed_fut` and
// cancels the accept tasks; (2) each accept task closes its listener as it unwinds;
// (3) the last connection to end, or close() itself if none is left, completes
// `idle_fut`; wait_closed() waits for (2) and (3).
#include <spindle/io/tcp.hpp>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include <spindle/future.hpp>
#include <spindle/runtime.hpp>
#include <spindle/timers.hpp>

#include "../../runtime/src/runtime_impl.hpp"

namespace spindle {
namespace detail {

struct ServerState : std::enable_shared_from_this<ServerState> {
  std::function<void(TcpStream)> handler;
  ServerOptions opts;
  std::vector<SocketAddress> addrs;
  std::vector<TcpListener> listeners;
  std::vector<Task<>> acceptors;
  Future<> closed_fut;  // done once close() ran
  Future<> idle_fut;    // done once closing and no connection is left

  std::mutex mu;
  bool closing = false;      // guarded by mu
  std::size_t active = 0;    // guarded by mu
  uint64_t next_id = 0;      // guarded by mu
  // A connection's task, and whether close_clients() ran before the handle was stored
  // (spawn_connection then cancels it itself, so no connection escapes the close).
  struct Conn {
    Task<> task;
    bool cancel = false;
  };
  std::unordered_map<uint64_t, Conn> conns;  // guarded by mu
  bool idle_set = false;     // guarded by mu

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
    Task<> t = spawn([g = ConnGuard(shared_from_this(), id), s = std::move(s)]() mutable {
      g.st->handler(std::move(s));
    });
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

  void accept_loop(std::size_t i) {
    TcpListener& l = listeners[i];
    struct CloseOnExit {
      TcpListener& l;
      ~CloseOnExit() { l.close(); }
    } coe{l};
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
          std::fprintf(stderr, "spindle: accept on %s failed: %s; retrying in %lld ms\n",
                       addrs[i].to_string().c_str(), e.what(), static_cast<long long>(opts.accept_backoff.count()));
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

Server start_server(std::function<void(TcpStream)> handler, std::string_view host, uint16_t port,
                    ServerOptions opts) {
  detail::RuntimeImpl* rt = detail::current_runtime();
  if (!rt) throw RuntimeError("start_server: no running runtime on this thread");
  if (!handler) throw std::invalid_argument("start_server: empty handler");
  auto st = std::make_shared<detail::ServerState>();
  st->handler = std::move(handler);
  st->opts = std::move(opts);
  const std::size_t n = st->opts.reuse_port ? rt->workers.size() : 1;
  const ListenOptions lo{.backlog = st->opts.backlog, .reuse_port = st->opts.reuse_port};
  st->listeners.reserve(n);
  st->listeners.emplace_back(host, port, lo);
  st->addrs.push_back(st->listeners[0].local_address());
  for (std::size_t i = 1; i < n; ++i) {
    st->listeners.emplace_back(st->addrs[0], lo);  // same address and (chosen) port
    st->addrs.push_back(st->addrs[0]);
  }
  st->acceptors.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    TaskOptions to{.name = "accept " + st->addrs[i].to_string(), .pinned = st->opts.reuse_port,
                   .loop = st->opts.reuse_port ? int(i) : -1};
    st->acceptors.push_back(spawn(to, [st, i] { st->accept_loop(i); }));
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

void Server::close() {
  auto& st = state(s_);
  {
    std::lock_guard lk(st.mu);
    if (st.closing) return;
    st.closing = true;
    st.set_idle_locked();
  }
  st.closed_fut.set_result();
  for (auto& a : st.acceptors) a.cancel("server closed");
}

void Server::close_clients() {
  auto& st = state(s_);
  std::vector<Task<>> ts;
  {
    std::lock_guard lk(st.mu);
    for (auto& [id, c] : st.conns) {
      if (c.task) ts.push_back(c.task);
      else c.cancel = true;  // spawned but not stored yet: spawn_connection cancels it
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
}

void Server::wait_closed() {
  auto& st = state(s_);
  const auto where = std::source_location::current();
  // wait_done_until raises our own cancellation without passing it on to what we wait for.
  (void)st.closed_fut.core_ptr()->wait_done_until(0, where);
  for (auto& a : st.acceptors) (void)a.core_ptr()->wait_done_until(0, where);
  (void)st.idle_fut.core_ptr()->wait_done_until(0, where);
}

}  // namespace spindle
