// Reading the call stack of a suspended fibre, and naming its frames.
//
// The DWARF unwinder (libgcc's, the one exceptions use) walks only the stack it runs on,
// so it is run on the fibre's: Boost.Context's resume_with switches into the suspended
// fibre, runs the unwinder on top of its frames, and switches back, leaving the fibre
// suspended as it was (stack_walk.cpp says how its later resumption stays exact). This
// needs no frame pointers and costs nothing until a stack is asked for. When the fibre
// has less than 64 KiB of stack left below its frames, it is not entered: the walk
// follows the frame-pointer chain from the context Boost.Context saved instead (every
// read checked against the fibre's stack bounds), which is complete only where the code
// keeps frame pointers.
//
// The caller must own the fibre so that nobody resumes it meanwhile (capture_stack does).
// x86-64 only so far (elsewhere the stack comes back empty).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <spindle/detail/task_header.hpp>
#include <spindle/monitor.hpp>

namespace spindle::detail {

inline constexpr std::size_t kMaxFrames = 64;

/// The return addresses of t's fibre, innermost first, if t is suspended now (else an
/// empty vector). Any thread. While it reads, the task is held as a loop holds a running
/// task (sched IDLE -> RUNNING); a wake-up meanwhile marks it NOTIFIED and is acted on
/// (the task is requeued) when the hold ends, as after_suspend does for a loop.
std::vector<uintptr_t> capture_stack(TaskHeader* t);

/// Names frames: file:line and function from the debug information (libbacktrace), else
/// the symbol table, else dladdr. Each return address is looked up one byte back (inside
/// its call instruction); inlined calls come out as frames of their own.
std::vector<StackFrame> symbolise(const std::vector<uintptr_t>& pcs);

/// symbolise, without the frames every fibre has (the switch at the inner end, the
/// fibre's entry and the call of the task's body at the outer end).
std::vector<StackFrame> describe_stack(const std::vector<uintptr_t>& pcs);

}  // namespace spindle::detail
