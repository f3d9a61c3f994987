// SocketStream under adversity: close() from another task while an operation
// is blocked (the stream is destroyed the moment close() returns), a stream used in a
// runtime after the one it was registered with has ended, and a peer that drips bytes
// to hold a read open past its timeout. socketpair streams only.
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include <spindle/io.hpp>

#include "io_support.hpp"

using namespace spindle;
using namespace std::chrono_literals;
using test::FdLeakCheck;

namespace {

enum class Op { read_exact, read_until, read_line, write_all };

const char* name(Op op) {
  switch (op) {
    case Op::read_exact:
      return "read_exact";
    case Op::read_until:
      return "read_until";
    case Op::read_line:
      return "read_line";
    case Op::write_all:
      return "write_all";
  }
  return "?";
}

// Runs `op` on s until it fails; returns the errno of the std::system_error it ends with
// (0 if it returned, -1 for any other exception).
int run_until_error(SocketStream& s, Op op) {
  try {
    switch (op) {
      case Op::read_exact:
        (void)s.read_exact(1u << 20);
        break;
      case Op::read_until:
        (void)s.read_until("END");
        break;
      case Op::read_line:
        (void)s.read_line();
        break;
      case Op::write_all:
        s.write_all(std::string(8u << 20, 'w'));
        break;
    }
    return 0;
  } catch (const std::system_error& e) {
    return e.code().value();
  } catch (...) {
    return -1;
  }
}

#if defined(SPINDLE_TSAN)
constexpr int kRounds = 60;
#else
constexpr int kRounds = 300;
#endif

}  // namespace

// close()'s promise: the fibres it woke have left the stream when it returns, so the
// object may be destroyed at once. Against the old code ASan reports a
// heap-use-after-free in SocketStream::unread (read_exact puts back what it gathered
// after the source's operation count was released).
TEST_CASE("close() from another task: the woken operation has left the stream when close() returns",
          "[io][stream][close]") {
  const unsigned workers = SPINDLE_WORKERS();
  const Op op = GENERATE(Op::read_exact, Op::read_until, Op::read_line, Op::write_all);
  // close() from a task, or from a thread outside the runtime (woken by a futex the
  // moment the operation leaves: the tightest race with what the operation does next).
  const bool from_thread = GENERATE(false, true);
  INFO(name(op) << " over " << workers << " workers, close() from a " << (from_thread ? "thread" : "task"));
  FdLeakCheck fdc;
  test::QuietRuntime q(workers);
  q.rt.block_on([&] {
    for (int round = 0; round < kRounds; ++round) {
      auto [a0, b] = UnixStream::pair();
      auto a = std::make_unique<UnixStream>(std::move(a0));
      // A reader has gathered something when close() wakes it (read_exact must put it back).
      if (op != Op::write_all) b.write_all("ab");
      auto blocked = spawn([&, op] { return run_until_error(*a, op); });
      test::until_suspended(blocked);
      // Every other round the peer keeps the stream busy while close() runs, so the
      // woken operation may also be handed a readiness edge and finish a syscall.
      const bool busy = round % 2 == 1;
      auto peer = spawn([&, busy, op] {
        if (!busy) return;
        try {
          char buf[4096];
          for (int i = 0; i < 16; ++i) {
            if (op == Op::write_all) {
              if (b.read(buf, sizeof buf) == 0) return;
            } else {
              b.write_all("x");  // never a delimiter, far below any limit
            }
            yield();
          }
        } catch (const std::system_error&) {
          // a is gone: EPIPE / ECONNRESET
        }
      });
      auto close_and_destroy = [&] {
        a->close();
        a.reset();  // at once: nothing may touch the stream any more
      };
      if (from_thread) {
        std::atomic<bool> done{false};
        std::thread closer([&] {
          close_and_destroy();
          done.store(true, std::memory_order_release);  // release: pairs with the acquire below
        });
        CHECK(blocked.get() == EBADF);
        // Not join() at once: close() may still wait for a task on this very worker (it
        // retires the fd on the loop that owns it).
        while (!done.load(std::memory_order_acquire)) yield();
        closer.join();
      } else {
        auto closer = spawn(close_and_destroy);
        closer.get();
        CHECK(blocked.get() == EBADF);
      }
      peer.get();
    }
  });
}

// A stream outlives the runtime it was registered with and is used in another. The rule
// (stream.hpp): its next wait registers it with the loop it runs on.
TEST_CASE("a stream whose runtime has ended works in a later runtime", "[io][stream][runtime]") {
  const unsigned workers = SPINDLE_WORKERS();
  const bool first_destroyed = GENERATE(true, false);  // A destroyed, or only shut down
  INFO((first_destroyed ? "runtime A destroyed" : "runtime A shut down, not destroyed")
       << ", " << workers << " workers");
  FdLeakCheck fdc;
  std::optional<UnixStream> a, b;
  std::optional<Runtime> first(std::in_place, test::opts(workers));
  first->block_on([&] {
    auto [x, y] = UnixStream::pair();
    a = std::move(x);
    b = std::move(y);
    // Make both wait once, so that both are registered with A's loops.
    for (auto* s : {&*a, &*b}) {
      s->set_timeout(1ms);
      char c;
      CHECK_THROWS_AS(s->read(&c, 1), TimeoutError);
    }
  });
  first->shutdown();
  if (first_destroyed) first.reset();

  // A bound, so that the old behaviour (never woken) fails instead of hanging.
  a->set_timeout(10s);
  b->set_timeout(10s);
  // It closes streams made before it (and A's fds may still be open): fdc checks the
  // descriptors over the whole test instead.
  test::Checked second(workers, {.fds = true});
  second.rt.block_on([&] {
    auto reader = spawn([&] { return a->read(64); });
    test::until_suspended(reader);
    b->write_all("hello");
    CHECK(reader.get() == "hello");
    // Both directions, with waits on both sides: far more than the socket buffers hold.
    constexpr std::size_t kBytes = 4u << 20;
    auto writer = spawn([&] { a->write_all(std::string(kBytes, 'z')); });
    const std::string got = b->read_exact(kBytes);
    writer.get();
    CHECK(got == std::string(kBytes, 'z'));
    a->close();
    b->close();
  });
  first.reset();
}

// set_timeout bounds each read call as a whole, not each recv inside it: a peer that
// sends a byte every 50 ms (never the delimiter) cannot hold a read open for longer.
TEST_CASE("a dripping peer cannot hold a read past its timeout; what it sent stays buffered", "[io][stream][timeout]") {
  const unsigned workers = SPINDLE_WORKERS();
  const Op op = GENERATE(Op::read_exact, Op::read_until, Op::read_line);
  INFO(name(op) << " over " << workers << " workers");
  FdLeakCheck fdc;
  test::QuietRuntime q(workers);
  q.rt.block_on([&] {
    auto [a, b] = UnixStream::pair();
    constexpr int kDrips = 100;  // one byte every 50 ms: 5 s in all
    std::atomic<bool> stop{false};
    auto dripper = spawn([&] {
      int sent = 0;
      // relaxed: a stop request; the count is returned through the task's result.
      while (sent < kDrips && !stop.load(std::memory_order_relaxed)) {
        b.write_all("x");
        ++sent;
        sleep(50ms);
      }
      return sent;
    });
    a.set_timeout(300ms);
    bool timed_out = false;
    try {
      switch (op) {
        case Op::read_exact:
          (void)a.read_exact(1000);
          break;
        case Op::read_until:
          (void)a.read_until("END");
          break;
        default:
          (void)a.read_line();
          break;
      }
    } catch (const TimeoutError&) {
      timed_out = true;
    }
    stop.store(true, std::memory_order_relaxed);
    const int sent = dripper.get();
    CHECK(timed_out);
    CHECK(sent < kDrips);  // the read ended long before the peer stopped dripping
    // Nothing the timed-out read had received is lost: it is all read next.
    a.set_timeout(std::nullopt);
    b.write_all("\n");
    CHECK(a.read_line() == std::string(std::size_t(sent), 'x') + "\n");
  });
}
