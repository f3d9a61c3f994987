// A client that asks many servers at once: it connects to every HOST:PORT given, sends
// each the same request line, and waits for each one's first reply line, every server
// with its own deadline (spindle::wait_for). A server that is down, resets, or is slow
// is reported on its own line; the others are not held up or failed by it.
//
//   fanout_client [-t TIMEOUT_MS=1000] [-m MESSAGE=ping] HOST:PORT...
//
// Output, one line per server in the order given:
//   127.0.0.1:7777 ok 0.4 ms: ping
//   127.0.0.1:7778 error: connect: Connection refused
//   127.0.0.1:7779 timeout after 1000 ms
// Exit status: 0 if every server replied, 1 if any did not, 2 for bad arguments.
// Try it against a few `echo_server PORT` instances.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io.hpp>
#include <spindle/spindle.hpp>

namespace {

using Clock = std::chrono::steady_clock;

struct Target {
  std::string label;  // as given on the command line
  std::string host;
  uint16_t port = 0;
};

// "host:port", "[v6]:port". Throws std::invalid_argument naming the bad argument.
Target parse_target(std::string_view arg) {
  const std::size_t colon = arg.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    throw std::invalid_argument("not HOST:PORT: '" + std::string(arg) + "'");
  std::string_view host = arg.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return Target{std::string(arg), std::string(host), spindle::parse_port(arg.substr(colon + 1))};
}

struct Outcome {
  std::string text;  // what to print after the label
  bool ok = false;
};

// One server: connect, send, read one line. Runs in a task of its own, bounded by
// wait_for; at the deadline the task is cancelled wherever it waits (connect or read),
// and its socket is closed as it unwinds.
Outcome ask(const Target& t, const std::string& request, std::chrono::milliseconds timeout) {
  const auto start = Clock::now();
  try {
    std::string reply = spindle::wait_for(
        [&] {
          spindle::TcpStream s = spindle::open_connection(t.host, t.port);
          s.write_all(request);
          return s.read_line();
        },
        timeout);
    if (reply.empty()) return {"error: closed without a reply", false};
    if (reply.back() == '\n') reply.pop_back();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    char head[64];
    std::snprintf(head, sizeof head, "ok %.1f ms: ", ms);
    return {head + reply, true};
  } catch (const spindle::TimeoutError&) {
    return {"timeout after " + std::to_string(timeout.count()) + " ms", false};
  } catch (const std::exception& e) {
    return {std::string("error: ") + e.what(), false};
  }
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "fanout_client: %s\nusage: fanout_client [-t TIMEOUT_MS] [-m MESSAGE] HOST:PORT...\n", why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::chrono::milliseconds timeout(1000);
  std::string message = "ping";
  std::vector<Target> targets;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view a = argv[i];
      if (a == "-t" || a == "-m") {
        if (i + 1 == argc) usage("an option lacks its value");
        const char* v = argv[++i];
        if (a == "-m") {
          message = v;
          continue;
        }
        char* end = nullptr;
        const long ms = std::strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || ms <= 0) throw std::invalid_argument("bad timeout '" + std::string(v) + "'");
        timeout = std::chrono::milliseconds(ms);
      } else {
        targets.push_back(parse_target(a));
      }
    }
  } catch (const std::invalid_argument& e) {
    usage(e.what());
  }
  if (targets.empty()) usage("no server given");
  if (message.find('\n') != std::string::npos) usage("the message must be one line");

  try {
    const std::vector<Outcome> outcomes = spindle::run([&] {
      const std::string request = message + "\n";
      // One task per server, all at once; each bounds itself with wait_for.
      std::vector<spindle::Task<Outcome>> tasks;
      for (const Target& t : targets)
        tasks.push_back(spindle::spawn([&t, &request, timeout] { return ask(t, request, timeout); }));
      std::vector<Outcome> out;
      for (auto& task : tasks) out.push_back(task.get());
      return out;
    });
    bool all_ok = true;
    for (std::size_t i = 0; i < targets.size(); ++i) {
      std::printf("%s %s\n", targets[i].label.c_str(), outcomes[i].text.c_str());
      all_ok = all_ok && outcomes[i].ok;
    }
    return all_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fanout_client: %s\n", e.what());
    return 1;
  }
}
