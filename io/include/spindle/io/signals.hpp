// Unix signals as events: wait_signal (asyncio's loop.add_signal_handler, awaited) and
// on_signal (a handler run in a task), both over signalfd(2).
//
// What a program must do: a signal handled this way must be BLOCKED in every thread of
// the process, or the kernel delivers it to a thread that has it unblocked (default
// action: usually death) instead of queuing it for the signalfd. Threads inherit the mask
// of the thread that creates them, so call block_signals({...}) at the very start of
// main, before any Runtime, ThreadPool or other thread exists:
//
//   int main() {
//     spindle::block_signals({SIGINT, SIGTERM});
//     return spindle::run([] { int sig = spindle::wait_signal({SIGINT, SIGTERM}); ... });
//   }
//
// A blocked signal that arrives while nobody waits stays pending (a standard signal is
// queued at most once) and is returned by the next wait.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <functional>
#include <initializer_list>

#include <spindle/task.hpp>
#include <spindle/time_limit.hpp>

namespace spindle {

/// Blocks `sigs` in the calling thread (pthread_sigmask(SIG_BLOCK)); threads started
/// afterwards by this thread inherit the mask. Throws std::invalid_argument for a
/// signal number that is not valid or cannot be blocked (SIGKILL, SIGSTOP),
/// std::system_error if pthread_sigmask fails. Any thread; call it in main before any
/// other thread exists.
void block_signals(std::initializer_list<int> sigs);

/// Waits until one of `sigs` arrives and returns its number (consuming it). From a fibre
/// only the calling fibre suspends; from a thread outside the runtime the thread blocks.
/// No timeout by default; zero or negative takes only a signal already pending. Throws std::invalid_argument for an
/// empty set or an invalid signal, RuntimeError if one of `sigs` is not blocked in the calling thread (see
/// block_signals), TimeoutError at the timeout, CancelledError if the calling task is
/// cancelled (no signal is consumed), std::system_error from signalfd.
int wait_signal(std::initializer_list<int> sigs, TimeLimit timeout = {});

/// Runs cb(sig) in a task of its own (named "on_signal") each time `sig` arrives, until
/// that task is cancelled (the returned handle's cancel(), or the runtime's shutdown).
/// An exception escaping cb ends the task (reported as any task's, never retrieved) and
/// the handler with it. Errors of the setup are thrown here: as wait_signal, plus
/// RuntimeError outside a runtime. Call from a fibre.
Task<> on_signal(int sig, std::function<void(int)> cb);

}  // namespace spindle
