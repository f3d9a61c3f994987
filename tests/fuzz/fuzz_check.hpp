// What the fuzz targets share: a check that stops the run on a broken invariant (libFuzzer
// keeps the input that did it), and a reader that takes the parameters of a run from
// the front of the fuzz input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace fuzz {

[[noreturn]] inline void fail(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz invariant broken at %s:%d: %s\n", file, line, what);
  std::abort();
}

#define FUZZ_CHECK(cond) ((cond) ? (void)0 : ::fuzz::fail(#cond, __FILE__, __LINE__))

/// Takes parameters off the front of the input; past its end every value is 0.
class Params {
 public:
  Params(const uint8_t* p, std::size_t n) noexcept : p_(p), n_(n) {}
  uint8_t byte() noexcept {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint16_t u16() noexcept { return uint16_t(byte() | (byte() << 8)); }
  /// What is left: the data the target works on.
  std::string_view rest() const noexcept { return {reinterpret_cast<const char*>(p_), n_}; }

 private:
  const uint8_t* p_;
  std::size_t n_;
};

/// A small deterministic generator (splitmix64) for the choices a target makes per run.
class Rng {
 public:
  explicit Rng(uint64_t seed) noexcept : x_(seed) {}
  uint64_t next() noexcept {
    uint64_t z = (x_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform enough in [lo, hi].
  std::size_t between(std::size_t lo, std::size_t hi) noexcept { return lo + std::size_t(next() % (hi - lo + 1)); }

 private:
  uint64_t x_;
};

}  // namespace fuzz
