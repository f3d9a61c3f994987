#include "core/overflow_guard.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/frame.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

namespace {
constexpr std::size_t kAltSize = 64 * 1024;
// How far below the guard region a fault still counts as an overflow: a frame larger
// than the region, built without stack probes, can jump over it. Only a separately
// mapped stack (TaskOptions::stack_size) may have nothing mapped below; below a slab's
// stack lies the next stack, where such a jump does not fault at all.
constexpr std::size_t kBelowGuard = 64 * 1024;

struct sigaction g_prev_segv, g_prev_bus;

void say(const char* s) noexcept { [[maybe_unused]] auto r = ::write(2, s, std::strlen(s)); }

void say_hex(uintptr_t v) noexcept {
  char buf[2 + 16 + 1];
  buf[0] = '0', buf[1] = 'x';
  for (int i = 0; i < 16; ++i) buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
  buf[18] = 0;
  say(buf);
}

void on_fault(int sig, siginfo_t* info, void* uctx) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  Worker* w = current_worker();
  TaskHeader* t = w ? w->current.load(std::memory_order_relaxed) : nullptr;
  TaskFrame* f = t ? t->frame : nullptr;
  if (f) {
    const auto lo = reinterpret_cast<uintptr_t>(f->stack.base);
    const auto hi = reinterpret_cast<uintptr_t>(f->stack.guard_end());
    // Anywhere in the guard region (kGuardBytes): with stack probes the fault is at its
    // top page, without them up to a frame's size lower.
    if (addr < hi && addr + kBelowGuard >= lo) {
      say("spindle: stack overflow in task '");
      // The name is read without the task's lock: the process is about to end.
      Extra* x = t->extra();
      if (x && !x->name.empty())
        say(x->name.c_str());
      else
        say("<unnamed>");
      say("' (task ");
      say_hex(reinterpret_cast<uintptr_t>(t));
      say(", fault at ");
      say_hex(addr);
      say("; stack size ");
      say_hex(f->stack.usable() + StackPool::page_size());  // as Options::stack_size counts it
      say("): raise TaskOptions::stack_size or Options::stack_size\n");
      ::signal(SIGABRT, SIG_DFL);
      std::abort();
    }
  }
  // Not ours: pass it on.
  const struct sigaction& prev = sig == SIGSEGV ? g_prev_segv : g_prev_bus;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) {
      prev.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler) {
    prev.sa_handler(sig);
    return;
  }
  ::signal(sig, SIG_DFL);  // returning re-runs the access, which now gets the default action
}
}  // namespace

void install_overflow_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = &on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, &g_prev_segv);
    ::sigaction(SIGBUS, &sa, &g_prev_bus);
  });
}

AltStack::AltStack() {
  void* p = ::mmap(nullptr, kAltSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;  // no report on overflow, but the worker still runs
  stack_t ss{};
  ss.ss_sp = p;
  ss.ss_size = kAltSize;
  stack_t old{};
  if (::sigaltstack(&ss, &old) != 0) {
    ::munmap(p, kAltSize);
    return;
  }
  mem_ = p;
  old_sp_ = old.ss_sp;
  old_size_ = old.ss_size;
  old_flags_ = old.ss_flags & SS_DISABLE;
}

AltStack::~AltStack() {
  if (!mem_) return;
  stack_t ss{};
  ss.ss_sp = old_sp_;
  ss.ss_size = old_size_;
  ss.ss_flags = old_flags_;
  if (old_flags_ != 0 || ::sigaltstack(&ss, nullptr) != 0) {
    stack_t off{};
    off.ss_flags = SS_DISABLE;
    ::sigaltstack(&off, nullptr);
  }
  ::munmap(mem_, kAltSize);
}

}  // namespace spindle::detail
