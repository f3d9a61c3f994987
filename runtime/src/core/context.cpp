// Per-thread runtime state, reached only through these out-of-line functions: a fibre
// can move between threads at any suspension, so no caller may cache a thread_local's
// address across one.
#include "core/frame.hpp"
#include "sched/runtime_impl.hpp"
#include "sched/worker.hpp"

namespace spindle::detail {

// initial-exec: libspindle.a is linked into executables, so the variable sits in the
// static TLS block and is one %fs-relative load, not a __tls_get_addr call (the PIC
// default would make it one). Declared in worker.hpp for yield's fast path, the one
// reader that may load it in place (see there).
__attribute__((tls_model("initial-exec"))) constinit thread_local Worker* tls_worker = nullptr;

__attribute__((noinline)) Worker* current_worker() noexcept {
  Worker* w = tls_worker;
  asm volatile("" ::: "memory");  // keep the compiler from merging this across calls
  return w;
}

__attribute__((noinline)) void set_current_worker(Worker* w) noexcept { tls_worker = w; }

__attribute__((noinline)) TaskHeader* current_task_header() noexcept {
  Worker* w = current_worker();
  return w ? w->current.load(std::memory_order_relaxed) : nullptr;
}

__attribute__((noinline)) RuntimeImpl* current_runtime() noexcept {
  Worker* w = current_worker();
  return w ? w->rt : nullptr;
}

}  // namespace spindle::detail
