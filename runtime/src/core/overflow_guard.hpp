// Stack overflow reporting. Every fibre stack has a guard page at its low end; touching
// it raises SIGSEGV on the overflowing stack, where no handler could run. So every
// worker thread has an alternate signal stack, and a process-wide SIGSEGV/SIGBUS handler
// checks whether the faulting address lies in (or just below) the guard page of the
// task running on that thread. If so it writes "spindle: stack overflow in task ..."
// to stderr and aborts; otherwise it hands the signal to the previous handler, or to
// the default action.
#pragma once

namespace spindle::detail {

/// Installs the handler once per process (idempotent, thread-safe).
void install_overflow_handler();

/// RAII: an alternate signal stack for the calling thread; the one it had before (none,
/// on a thread of ours; perhaps its own, on run()'s caller, which runs loop 0) comes back
/// at the end.
class AltStack {
 public:
  AltStack();
  ~AltStack();
  AltStack(const AltStack&) = delete;
  AltStack& operator=(const AltStack&) = delete;

 private:
  void* mem_ = nullptr;
  void* old_sp_ = nullptr;  // the previous alternate stack: base, size, flags
  unsigned long old_size_ = 0;
  int old_flags_ = 0;
};

}  // namespace spindle::detail
