// Stack overflows through large frames (docs/architecture.md, "Stacks and guard pages"):
// a task that recurses with frames of 1 to 128 KiB dies with spindle's report naming it,
// and the tasks suspended on the stacks beside it in the same slab keep their stacks
// untouched. Each case runs tests/overflow_child.cpp in a process of its own, once built
// with stack probes (-fstack-clash-protection, as spindle's dependency exports it) and
// once without, where only frames smaller than the guard region are promised.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "support.hpp"

extern char** environ;

namespace {
struct Outcome {
  int status = 0;
  std::string err;
};

Outcome run_child(const char* path, int kib) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::string arg = std::to_string(kib);
  char* argv[] = {const_cast<char*>(path), arg.data(), nullptr};
  pid_t pid;
  const int rc = posix_spawn(&pid, path, &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  REQUIRE(rc == 0);
  Outcome o;
  char buf[4096];
  for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) > 0;) o.err.append(buf, r);
  ::close(fds[0]);
  REQUIRE(::waitpid(pid, &o.status, 0) == pid);
  return o;
}

void check_reported(const char* env, int kib) {
  const char* child = std::getenv(env);
  REQUIRE(child != nullptr);
  const Outcome o = run_child(child, kib);
  INFO(env << ", frames of " << kib << " KiB; the child's stderr:\n" << o.err);
  CHECK(WIFSIGNALED(o.status));
  if (WIFSIGNALED(o.status)) CHECK(WTERMSIG(o.status) == SIGABRT);  // spindle's report aborts
  CHECK(o.err.find("spindle: stack overflow in task 'deep-recursion'") != std::string::npos);
  // Checked by the child at the fault, before spindle's handler reports it.
  CHECK(o.err.find("overflow_child: neighbours intact") != std::string::npos);
  CHECK(o.err.find("corrupted") == std::string::npos);
}
}  // namespace

TEST_CASE("an overflow through frames of any size is reported when the code is built with stack probes", "[overflow]") {
  // 128 KiB is larger than the guard region: only the probes catch it.
  const int kib = GENERATE(1, 5, 8, 16, 32, 64, 70, 128);
  check_reported("SPINDLE_OVERFLOW_CHILD", kib);
}

TEST_CASE("an overflow through frames smaller than the guard region is reported without stack probes", "[overflow]") {
  const int kib = GENERATE(1, 5, 8, 16, 32, 60);
  check_reported("SPINDLE_OVERFLOW_CHILD_UNPROBED", kib);
}
