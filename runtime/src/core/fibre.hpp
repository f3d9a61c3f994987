// Making, entering and leaving task fibres, with the sanitizer annotations that go with
// every switch (sanitizer.hpp).
#pragma once

#include <boost/context/fiber.hpp>

#include <spindle/detail/task_header.hpp>

#include "core/stack_pool.hpp"

namespace spindle::detail {

/// A fibre that will run t's body on stack s; the stack goes back to the pool (the
/// current worker's cache) the moment the fibre ends.
boost::context::fiber make_fibre(TaskHeader* t, const Stack& s, StackPool* pool, void* tsan_fiber);

/// The calling thread's C++ exception globals (see fibre.cpp).
void* thread_eh_globals() noexcept;

/// The calling thread's exception globals taken out (the thread's left empty, as a loop
/// needs them: run() may be called from inside a handler) and put back.
struct ThreadEh {
  void* caught = nullptr;
  unsigned int uncaught = 0;
};
ThreadEh take_thread_eh() noexcept;
void put_thread_eh(const ThreadEh& e) noexcept;

}  // namespace spindle::detail
