// Overflows the stack of a task named "deep-recursion"; tests/runtime_scheduler.cpp
// runs this program and checks that it dies with spindle's report, naming the task.
#include <spindle/spindle.hpp>

#include <cstdio>

namespace {
__attribute__((noinline)) int recurse(volatile char* prev, int depth) {
  volatile char pad[1024];
  pad[0] = static_cast<char>(depth);
  if (prev) pad[1] = prev[0];
  if (depth < 0) return 0;  // never: keeps the compiler from calling it infinite
  return recurse(pad, depth + 1) + pad[0];
}
}  // namespace

int main() {
  spindle::Runtime rt(spindle::Options{.workers = 1});
  rt.spawn(spindle::TaskOptions{.name = "deep-recursion", .stack_size = 64 * 1024}, [] { return recurse(nullptr, 0); })
      .get();
  std::puts("not reached");
  return 0;
}
