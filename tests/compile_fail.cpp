// Misuse of spindle's typed APIs that must not compile, one case per value of CASE
// (tests/meson.build runs tests/consumer/compile_check.py over each): every case gets
// exactly one error, and the error says what is wrong. CASE=0 uses the same APIs well
// and compiles clean under -Wall -Wextra -Werror, so each error comes from its misuse.
#include <spindle/executors/process_pool.hpp>
#include <spindle/spindle.hpp>

#include <string>
#include <vector>

namespace {

int square_impl(int x) { return x * x; }
std::string label_impl(const std::string& s, std::vector<int> v) { return s + std::to_string(v.size()); }
double half_impl(double x) noexcept { return x / 2; }
int length_impl(const char* s) { return int(std::string(s).size()); }
struct Opaque {
  std::string text;  // not trivially copyable, and no Codec<Opaque>
};
int opaque_size_impl(Opaque o) { return int(o.text.size()); }
Opaque make_opaque_impl(int n) { return Opaque{std::string(std::size_t(n), 'x')}; }

inline const auto square = spindle::process_function<int(int)>("square", &square_impl);
inline const auto label = spindle::process_function("label", &label_impl);
inline const auto half = spindle::process_function("half", &half_impl);

[[maybe_unused]] void use(spindle::ProcessPool& pool, spindle::Runtime& rt) {
#if CASE == 0
  // Each argument converts to its parameter's type: a string literal to a std::string,
  // an int to a double, a float to a double.
  const int a = pool.call(square, 7);
  const std::string b = pool.call(label, "x", std::vector<int>{1, 2});
  const double c = pool.call(half, 3) + pool.call(half, 1.5f);
  (void)a, (void)b, (void)c;
  auto t = rt.spawn(
      spindle::TaskOptions{.name = "t"}, [](int x) { return x; }, 1);
  (void)t;
#elif CASE == 1   // an argument of another type
  (void)pool.call(square, std::string("7"));
#elif CASE == 2   // an argument that would be narrowed
  (void)pool.call(square, 7.5);
#elif CASE == 3   // one argument too many
  (void)pool.call(square, 7, 8);
#elif CASE == 4   // the result taken as another type
  const std::string s = pool.call(square, 7);
  (void)s;
#elif CASE == 5   // a function named by a string, as before the handles
  (void)pool.call("square", 7);
#elif CASE == 6   // a pointer parameter
  (void)spindle::process_function("length", &length_impl);
#elif CASE == 7   // a parameter with no Codec
  (void)spindle::process_function("opaque_size", &opaque_size_impl);
#elif CASE == 8   // a result with no Codec
  (void)spindle::process_function("make_opaque", &make_opaque_impl);
#elif CASE == 9   // options first, and an argument the function does not take
  (void)spindle::spawn(
      spindle::TaskOptions{.name = "t"}, [](int x) { return x; }, std::string("1"));
#elif CASE == 10  // options first, and an argument missing
  (void)rt.spawn(spindle::TaskOptions{.name = "t"}, [](int x) { return x; });
#endif
  (void)pool, (void)rt;
}

}  // namespace
