// The chat and fan-out examples, run as child processes (spindle::Process) over
// loopback: three chat clients see each other's lines but never their own, a client
// that stops reading is cut off while the others go on, and the fan-out client reports
// a reply, a timeout and a refused connection each on its own line.
//
// tests/meson.build builds the examples once more as chat_server_child and
// fanout_client_child and passes their paths in SPINDLE_CHAT_SERVER and
// SPINDLE_FANOUT_CLIENT.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;

namespace {

using test::FdLeakCheck;

std::string child_path(const char* var) {
  const char* p = std::getenv(var);
  if (p == nullptr) FAIL(std::string(var) + " is not set: run this test through meson");
  return p;
}

// Fails the test if a child process (running or zombie) is left at its end.
struct NoChildLeft {
  ~NoChildLeft() {
    const pid_t r = ::waitpid(-1, nullptr, WNOHANG);
    const int e = errno;
    CHECK(r == -1);
    CHECK(e == ECHILD);
  }
};

// Starts the chat server on a free port; returns it and the port it printed.
std::pair<Process, uint16_t> start_chat(unsigned workers, int outbox) {
  Process p = Process::spawn(
      {child_path("SPINDLE_CHAT_SERVER"), "0", std::to_string(workers), "127.0.0.1", std::to_string(outbox)},
      {.out = Stdio::pipe});
  p.out().set_timeout(10s);
  const std::string first = p.out().read_line();  // "listening on 127.0.0.1:PORT\n"
  REQUIRE(first.rfind("listening on 127.0.0.1:", 0) == 0);
  const uint16_t port = parse_port(first.substr(first.rfind(':') + 1, first.size() - first.rfind(':') - 2));
  return {std::move(p), port};
}

struct ChatClient {
  TcpStream s;
  std::string name;  // how the server names us: our address as it sees it
};

ChatClient join(uint16_t port, std::size_t expect_online) {
  ChatClient c{open_connection("127.0.0.1", port), ""};
  c.s.set_timeout(10s);  // a bug fails the test instead of hanging it
  c.name = c.s.local_address().to_string();
  CHECK(c.s.read_line() == "* welcome " + c.name + ", " + std::to_string(expect_online) + " online\n");
  return c;
}

// The next line that is not a server notice ("* ...").
std::string next_message(ChatClient& c) {
  for (;;) {
    std::string l = c.s.read_line(16 * 1024);
    if (l.rfind("* ", 0) != 0) return l;
  }
}

// Reads until `notice` arrives; only notices may come before it.
bool await_notice(ChatClient& c, const std::string& notice) {
  for (;;) {
    const std::string l = c.s.read_line(16 * 1024);
    if (l == notice) return true;
    if (l.rfind("* ", 0) != 0) return false;
  }
}

}  // namespace

TEST_CASE("chat: each line reaches every other client, never its sender", "[io][examples]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    auto [server, port] = start_chat(workers, 1024);
    std::vector<ChatClient> c;
    for (std::size_t i = 0; i < 3; ++i) c.push_back(join(port, i + 1));

    c[0].s.write_all("hello from A\n");
    CHECK(next_message(c[1]) == c[0].name + ": hello from A\n");
    CHECK(next_message(c[2]) == c[0].name + ": hello from A\n");
    c[1].s.write_all("hi from B");  // no newline: the server ends the line at EOF
    c[1].s.shutdown_write();
    // A's first message is B's: its own line did not come back to it.
    CHECK(next_message(c[0]) == c[1].name + ": hi from B\n");
    CHECK(next_message(c[2]) == c[1].name + ": hi from B\n");
    CHECK(await_notice(c[0], "* " + c[1].name + " left\n"));
    while (!c[1].s.read_line().empty()) {  // B was let go after its EOF: its stream ends
    }

    c[2].s.close();
    CHECK(await_notice(c[0], "* " + c[2].name + " left\n"));
    c[0].s.write_all("anyone?\n");
    c[0].s.shutdown_write();
    CHECK(c[0].s.read_line() == "");  // nobody else is left to echo to; no line of its own

    server.terminate();
    CHECK(server.wait().signal == SIGTERM);
  });
}

TEST_CASE("chat: a client that stops reading is cut off, the others go on", "[io][examples]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    auto [server, port] = start_chat(workers, 16);
    ChatClient a = join(port, 1), b = join(port, 2), idle = join(port, 3);
    const std::string left = "* " + idle.name + " left\n";
    const std::string big = std::string(4000, 'x') + "\n";
    // A and B in lockstep (B never falls behind); `idle` reads nothing, so its socket
    // buffers and then its outbox fill, and the server cuts it off. 64 MB at most.
    bool cut = false;
    std::size_t sent = 0;
    while (!cut && sent < 16384) {
      a.s.write_all(big);
      ++sent;
      for (;;) {
        const std::string l = b.s.read_line(16 * 1024);
        if (l == left) {
          cut = true;
          continue;
        }
        if (l.rfind("* ", 0) == 0) continue;
        REQUIRE(l == a.name + ": " + big);
        break;
      }
    }
    REQUIRE(cut);
    // The idle client's stream ends (EOF, or a reset) after what was already on its way.
    std::size_t got = 0;
    bool ended = false;
    try {
      std::string buf(64 * 1024, '\0');
      while (std::size_t n = idle.s.read(buf.data(), buf.size())) got += n;
      ended = true;
    } catch (const std::system_error& e) {
      ended = e.code().value() == ECONNRESET;
    }
    CHECK(ended);
    CHECK(got < sent * (a.name.size() + 2 + big.size()));
    // A and B still talk.
    a.s.write_all("still here\n");
    CHECK(next_message(b) == a.name + ": still here\n");

    server.terminate();
    CHECK(server.wait().signal == SIGTERM);
  });
}

TEST_CASE("fanout_client reports a reply, a timeout and a refusal per server", "[io][examples]") {
  const unsigned workers = SPINDLE_WORKERS();
  NoChildLeft ncl;
  FdLeakCheck fdc;
  test::Checked harness(workers);
  Runtime& rt = harness.rt;
  rt.block_on([&] {
    Server echo = start_server(
        [](TcpStream s) {
          while (true) {
            const std::string l = s.read_line();
            if (l.empty()) return;
            s.write_all(l);
          }
        },
        "127.0.0.1", 0);
    Server silent = start_server([](TcpStream) { test::forever(); }, "127.0.0.1", 0);
    uint16_t closed_port;
    {
      TcpListener l("127.0.0.1", 0);
      closed_port = l.port();
    }
    const std::string e = "127.0.0.1:" + std::to_string(echo.port());
    const std::string s = "127.0.0.1:" + std::to_string(silent.port());
    const std::string c = "127.0.0.1:" + std::to_string(closed_port);
    const std::string client = child_path("SPINDLE_FANOUT_CLIENT");

    ProcessOutput r = Process::spawn({client, "-t", "300", "-m", "hello", e, s, c}, {.out = Stdio::pipe}).communicate();
    CHECK(r.status.code == 1);
    std::vector<std::string> lines;
    for (std::size_t at = 0, nl; (nl = r.out.find('\n', at)) != std::string::npos; at = nl + 1)
      lines.push_back(r.out.substr(at, nl - at));
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].rfind(e + " ok ", 0) == 0);
    CHECK(lines[0].ends_with(" ms: hello"));
    CHECK(lines[1] == s + " timeout after 300 ms");
    CHECK(lines[2].rfind(c + " error: connect", 0) == 0);
    CHECK(lines[2].find("refused") != std::string::npos);

    r = Process::spawn({client, "-m", "one", e, e}, {.out = Stdio::pipe}).communicate();
    CHECK(r.status.success());
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 2);

    r = Process::spawn({client, "127.0.0.1"}, {.out = Stdio::devnull, .err = Stdio::pipe}).communicate();
    CHECK(r.status.code == 2);
    CHECK(r.err.find("not HOST:PORT: '127.0.0.1'") != std::string::npos);

    echo.close();
    silent.close();
    silent.close_clients();
    echo.wait_closed();
    silent.wait_closed();
  });
}
