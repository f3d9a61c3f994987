// Helpers shared by the io_* tests: an fd-leak check.
#pragma once

#include "support.hpp"

namespace test {

// Fails the test if the fds open at its end differ from those at its start. Declare it
// before the Runtime, so that the runtime's own fds are gone when it checks.
struct FdLeakCheck {
  int before = open_fds();
  ~FdLeakCheck() { CHECK(open_fds() == before); }
};

}  // namespace test
