// A chat server: every line a client sends goes to every other client, prefixed with
// the sender's address ("127.0.0.1:50312: hello"). Lines starting with "* " come from
// the server: a welcome to each new client, and "joined" / "left" notices to the others.
//
//   chat_server [PORT=7878 (0: any free port)] [WORKERS=0 (one per CPU)] [HOST=127.0.0.1]
//               [OUTBOX=1024 (lines a client may fall behind by before it is cut off)]
//
// It prints "listening on HOST:PORT" once ready. Try it with two or three `nc 127.0.0.1 7878`.
//
// Design: each client has an outbox (a bounded spindle::Channel of shared, immutable
// lines) and two fibres: its handler reads lines and broadcasts them, and a writer
// drains the outbox to the socket. A broadcast only try_send()s into each outbox, so it
// never waits for anyone: a client whose outbox is full (it has stopped reading) is cut
// off — its handler is cancelled — instead of slowing everyone down. The room (the set
// of clients) is guarded by a std::mutex held for those non-blocking sends only.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <spindle/io.hpp>
#include <spindle/spindle.hpp>
#include <spindle/sync/channel.hpp>

namespace {

constexpr std::size_t kMaxLine = 4096;  // a longer line cuts its client off

using Line = std::shared_ptr<const std::string>;  // one copy of a line for every recipient

struct Client {
  explicit Client(std::size_t outbox_lines) : outbox(outbox_lines) {}
  std::string name;
  spindle::Channel<Line> outbox;
  spindle::Task<> handler;  // cancelled if the client falls too far behind
};

class Room {
 public:
  explicit Room(std::size_t outbox_lines) : outbox_lines_(outbox_lines) {}
  std::size_t outbox_lines() const noexcept { return outbox_lines_; }
  // Adds c and tells everyone; c gets the welcome first.
  void join(const std::shared_ptr<Client>& c) {
    std::lock_guard lk(mu_);
    clients_[c.get()] = c;
    offer(*c, line("* welcome " + c->name + ", " + std::to_string(clients_.size()) + " online\n"));
    send_others(c.get(), line("* " + c->name + " joined\n"));
  }
  // Removes c (if still there), closes its outbox and tells the others.
  void leave(Client* c) noexcept {
    try {
      std::lock_guard lk(mu_);
      if (clients_.erase(c) == 0) return;
      c->outbox.close();
      send_others(c, line("* " + c->name + " left\n"));
    } catch (const std::exception&) {
      // Out of memory for the notice: the others just are not told.
    }
  }
  void broadcast(const Client* from, const std::string& text) {
    const Line l = line(from->name + ": " + text);
    std::lock_guard lk(mu_);
    send_others(from, l);
  }

 private:
  static Line line(std::string s) { return std::make_shared<const std::string>(std::move(s)); }
  // Under mu_. Never waits: a full outbox cuts its client off.
  void offer(Client& c, const Line& l) {
    if (c.outbox.try_send(l) == spindle::SendStatus::full) c.handler.cancel("too slow: outbox full");
  }
  void send_others(const Client* from, const Line& l) {
    for (auto& [p, c] : clients_)
      if (p != from) offer(*c, l);
  }

  const std::size_t outbox_lines_;
  std::mutex mu_;
  std::unordered_map<const Client*, std::shared_ptr<Client>> clients_;
};

// Leaves the room and stops the writer however the handler ends (EOF, error, cancel).
struct Membership {
  Room& room;
  std::shared_ptr<Client> me;
  spindle::Task<> writer;
  ~Membership() {
    room.leave(me.get());
    try {
      writer.cancel();  // it may be blocked writing to a client that is not reading
    } catch (const std::exception&) {
    }
  }
};

void serve_client(Room& room, spindle::TcpStream stream) {
  // The writer fibre shares the stream; it is closed when both are done with it.
  auto conn = std::make_shared<spindle::TcpStream>(std::move(stream));
  auto me = std::make_shared<Client>(room.outbox_lines());
  me->name = conn->peer_address().to_string();
  me->handler = spindle::current_task();
  spindle::Task<> writer = spindle::spawn(spindle::TaskOptions{.name = "chat-writer"}, [conn, me] {
    try {
      for (const Line& l : me->outbox) conn->write_all(*l);
    } catch (const std::system_error&) {
      // The client is gone; its handler sees that on its next read.
    }
  });
  Membership m{room, me, writer};
  room.join(me);
  try {
    for (;;) {
      std::string l = conn->read_line(kMaxLine);
      if (l.empty()) return;            // EOF
      if (l.back() != '\n') l += '\n';  // a last line without its newline
      room.broadcast(me.get(), l);
    }
  } catch (const spindle::LimitOverrunError&) {
    // A line longer than kMaxLine: this client is cut off.
  } catch (const std::system_error&) {
    // A reset ends this client only.
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const uint16_t port = argc > 1 ? spindle::parse_port(argv[1]) : 7878;
    const unsigned workers = argc > 2 ? unsigned(std::atoi(argv[2])) : 0;
    const char* host = argc > 3 ? argv[3] : "127.0.0.1";
    const long outbox = argc > 4 ? std::atol(argv[4]) : 1024;
    if (outbox < 1) throw std::invalid_argument(std::string("bad OUTBOX (a line count >= 1): ") + argv[4]);
    Room room(static_cast<std::size_t>(outbox));  // outlives the runtime, and so every handler
    spindle::run(
        [&] {
          spindle::Server srv = spindle::start_server(
              [&room](spindle::TcpStream s) { serve_client(room, std::move(s)); }, host, port, {.nodelay = true});
          std::printf("listening on %s\n", srv.addresses()[0].to_string().c_str());
          std::fflush(stdout);
          srv.serve_forever();
        },
        spindle::Options{.workers = workers});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat_server: %s\n", e.what());
    return 1;
  }
}
