// Overflows the stack of a task named "deep-recursion"; the tests run this program and
// check that it dies with spindle's report, naming the task.
//
//   overflow_child            1 KiB frames on a separately mapped 64 KiB stack
//                             (tests/runtime_scheduler.cpp)
//   overflow_child <KiB>      frames of <KiB> KiB on a default stack, carved from a slab,
//                             with tasks suspended on the stacks beside it, each holding a
//                             sentinel pattern (tests/runtime_overflow.cpp)
//
// In the second form a SIGSEGV/SIGBUS handler of this program's own runs first (it is
// installed after the runtime's): it checks every neighbour's sentinel, says on stderr
// "neighbours intact" or "neighbour <i> corrupted", and passes the signal on to spindle's
// handler. If the recursion ever returns, or the recursing task ends otherwise, the
// sentinels are checked as well and the program exits with status 2; with status 3 if no
// neighbour's stack lies directly below the recursing task's (the test could not tell).
//
// meson.build builds this file twice: with -fstack-clash-protection (as spindle's
// dependency exports it) and with -fno-stack-clash-protection, where a frame's first
// touch may lie a whole frame below the previous one.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <spindle/spindle.hpp>
#include <spindle/sync.hpp>

namespace {
__attribute__((noinline)) int recurse(volatile char* prev, int depth) {
  volatile char pad[1024];
  pad[0] = static_cast<char>(depth);
  if (prev) pad[1] = prev[0];
  if (depth < 0) return 0;  // never: keeps the compiler from calling it infinite
  return recurse(pad, depth + 1) + pad[0];
}

// One frame of KiB kibibytes. The first store is to the frame's lowest byte, so without
// stack probes the first touch below the previous frame is a whole frame away from it.
template <std::size_t KiB>
__attribute__((noinline)) int recurse_big(volatile char* prev, int depth) {
  volatile char pad[KiB * 1024];
  pad[0] = static_cast<char>(depth);
  pad[sizeof pad - 1] = prev ? prev[0] : 0;
  if (depth < 0) return 0;  // never
  return recurse_big<KiB>(pad, depth + 1) + pad[0];
}

int run_frames(int kib) {
  switch (kib) {
    case 1:
      return recurse_big<1>(nullptr, 0);
    case 5:
      return recurse_big<5>(nullptr, 0);
    case 8:
      return recurse_big<8>(nullptr, 0);
    case 16:
      return recurse_big<16>(nullptr, 0);
    case 32:
      return recurse_big<32>(nullptr, 0);
    case 60:
      return recurse_big<60>(nullptr, 0);
    case 64:
      return recurse_big<64>(nullptr, 0);
    case 70:
      return recurse_big<70>(nullptr, 0);
    case 128:
      return recurse_big<128>(nullptr, 0);
  }
  std::fprintf(stderr, "overflow_child: no frame size %d KiB\n", kib);
  std::_Exit(4);
}

constexpr int kNeighbours = 3;
constexpr std::size_t kSentinel = 160 * 1024;
constexpr std::size_t kStackSize = 256 * 1024;  // spindle's default, said explicitly

std::atomic<unsigned char*> g_sentinel[kNeighbours];

unsigned char pattern(int who, std::size_t i) { return static_cast<unsigned char>(i * 131 + 7 + who * 29); }

// Reads other fibres' stacks (ASan's shadow there is theirs), from a signal handler too.
__attribute__((no_sanitize("address"))) int first_corrupted() noexcept {
  for (int n = 0; n < kNeighbours; ++n) {
    const unsigned char* s = g_sentinel[n].load(std::memory_order_acquire);
    for (std::size_t i = 0; s && i < kSentinel; ++i)
      if (s[i] != pattern(n, i)) return n;
  }
  return -1;
}

void say(const char* s) noexcept { [[maybe_unused]] auto r = ::write(2, s, std::strlen(s)); }

void say_neighbours() noexcept {
  const int bad = first_corrupted();
  if (bad < 0) {
    say("overflow_child: neighbours intact\n");
  } else {
    char msg[] = "overflow_child: neighbour ? corrupted\n";
    *std::strchr(msg, '?') = static_cast<char>('0' + bad);
    say(msg);
  }
}

struct sigaction g_next_segv, g_next_bus;

void check_then_pass_on(int sig, siginfo_t* info, void* uctx) {
  say_neighbours();
  const struct sigaction& next = sig == SIGSEGV ? g_next_segv : g_next_bus;
  if ((next.sa_flags & SA_SIGINFO) && next.sa_sigaction) {
    next.sa_sigaction(sig, info, uctx);
    return;
  }
  ::signal(sig, SIG_DFL);  // returning re-runs the access, which gets the default action
}

// Holds the sentinel in its own frame, on its own stack, while it waits.
__attribute__((noinline)) void neighbour(int n, std::atomic<int>& filled, spindle::Event& end) {
  unsigned char sentinel[kSentinel];
  for (std::size_t i = 0; i < kSentinel; ++i) sentinel[i] = pattern(n, i);
  g_sentinel[n].store(sentinel, std::memory_order_release);
  filled.fetch_add(1, std::memory_order_release);
  end.wait();
  g_sentinel[n].store(nullptr, std::memory_order_release);
}

int with_neighbours(int kib) {
  spindle::Runtime rt(spindle::Options{.workers = 1, .stack_size = kStackSize});
  // The runtime installed its handler when it started; ours goes in front of it.
  struct sigaction sa {};
  sa.sa_sigaction = &check_then_pass_on;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &g_next_segv);
  ::sigaction(SIGBUS, &sa, &g_next_bus);

  spindle::Event go, end;
  std::atomic<uintptr_t> victim_top{0};
  std::atomic<int> filled{0};
  // The recursing task starts first; each neighbour starts after the one before it has
  // filled its sentinel, so each takes the next stack of the worker's cache.
  auto victim = rt.spawn(spindle::TaskOptions{.name = "deep-recursion"}, [&] {
    volatile char here = 0;
    victim_top.store(reinterpret_cast<uintptr_t>(&here), std::memory_order_release);
    go.wait();
    return run_frames(kib);
  });
  while (victim_top.load(std::memory_order_acquire) == 0) sched_yield();
  std::vector<spindle::Task<void>> ns;
  for (int n = 0; n < kNeighbours; ++n) {
    ns.push_back(rt.spawn([n, &filled, &end] { neighbour(n, filled, end); }));
    while (filled.load(std::memory_order_acquire) <= n) sched_yield();
  }
  // The stack just below the recursing task's must be a neighbour's, or a sentinel
  // could not see an overflow that jumped the guard.
  const uintptr_t top = victim_top.load();
  bool adjacent = false;
  for (int n = 0; n < kNeighbours; ++n) {
    const auto s = reinterpret_cast<uintptr_t>(g_sentinel[n].load(std::memory_order_acquire));
    if (s + kSentinel < top && top - (s + kSentinel) < 2 * kStackSize) adjacent = true;
  }
  if (!adjacent) {
    std::fprintf(stderr, "overflow_child: no neighbour's stack lies just below the recursing task's\n");
    end.set();
    return 3;
  }
  go.set();
  try {
    victim.get();
    std::fprintf(stderr, "overflow_child: the recursion returned\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "overflow_child: the recursing task failed: %s\n", e.what());
  }
  say_neighbours();
  end.set();
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) return with_neighbours(std::atoi(argv[1]));
  spindle::Runtime rt(spindle::Options{.workers = 1});
  rt.spawn(spindle::TaskOptions{.name = "deep-recursion", .stack_size = 64 * 1024}, [] {
      return recurse(nullptr, 0);
    }).get();
  std::puts("not reached");
  return 0;
}
