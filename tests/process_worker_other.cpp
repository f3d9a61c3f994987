// Another program's process functions, for executors_process_adversity: its ProcessPool
// runs this program as its workers (ProcessPoolOptions::executable). The names are the
// test's, the types are not (or the name is missing), so the calls reach the worker's
// own checks: a call from the program that registered the functions always matches them,
// its handles' types having been checked when it was compiled.
#include <cstdint>
#include <string>

#include <spindle/executors/process_pool.hpp>

namespace {
std::string add_impl(std::string s) { return s; }  // the test's "add": int(int, int)
int echo_impl(int v) { return v; }                 // the same as the test's
int pair_of_impl(int v) { return v; }              // the test's: std::pair<int64_t, int64_t>(int)
int narrow_impl(int v) { return v; }               // the test's: char(int)
std::string numbers_impl() { return "abc"; }       // the test's: std::vector<int64_t>()
// (no "only_there": the test's "only_there" is not registered here)

const auto add = spindle::process_function("add", &add_impl);
const auto echo = spindle::process_function("echo", &echo_impl);
const auto pair_of = spindle::process_function("pair_of", &pair_of_impl);
const auto narrow = spindle::process_function("narrow", &narrow_impl);
const auto numbers = spindle::process_function("numbers", &numbers_impl);
}  // namespace

int main() {
  spindle::serve_process_worker();  // started by a pool: serves, never returns
  return 1;                         // run by hand: nothing to do
}
