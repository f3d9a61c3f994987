#include "core/stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <system_error>

#if defined(SPINDLE_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

#if defined(SPINDLE_ASAN)
#include <sanitizer/asan_interface.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

namespace spindle::detail {

namespace {
constexpr std::size_t kSlabStacks = 64;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// The mapping for a stack of `size` bytes as asked: the usable part (one page less, as
// when the guard was one page of it) and the guard region below.
std::size_t mapping_bytes(std::size_t size) noexcept {
  return StackPool::rounded(size) - StackPool::page_size() + kGuardBytes;
}

char* map_region(std::size_t bytes) {
  void* p =
      ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) {
    if (errno == ENOMEM) throw std::bad_alloc();
    throw std::system_error(errno, std::generic_category(), "mmap(fibre stack)");
  }
  return static_cast<char*>(p);
}

// The guard region at `base`, the low end of a stack. One call either way: the mprotect
// fallback splits the mapping once per stack whatever the region's size.
void install_guard(char* base) {
  if (StackPool::guard_mode() == GuardMode::guard_install) {
    if (::madvise(base, kGuardBytes, MADV_GUARD_INSTALL) == 0) return;
  }
  if (::mprotect(base, kGuardBytes, PROT_NONE) != 0)
    throw std::system_error(errno, std::generic_category(), "mprotect(fibre stack guard)");
}

GuardMode probe_guard_mode() {
  const std::size_t ps = ::sysconf(_SC_PAGESIZE);
  void* p = ::mmap(nullptr, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return GuardMode::mprotect;
  const bool ok = ::madvise(p, ps, MADV_GUARD_INSTALL) == 0;
  ::munmap(p, 2 * ps);
  return ok ? GuardMode::guard_install : GuardMode::mprotect;
}
}  // namespace

std::size_t StackPool::page_size() noexcept {
  static const std::size_t ps = ::sysconf(_SC_PAGESIZE);
  return ps;
}

GuardMode StackPool::guard_mode() noexcept {
  static const GuardMode mode = probe_guard_mode();
  return mode;
}

std::size_t StackPool::rounded(std::size_t size) noexcept {
  return round_up(size < 4 * page_size() ? 4 * page_size() : size, page_size());
}

StackPool::StackPool(std::size_t default_size)
    : default_size_(rounded(default_size)), default_bytes_(mapping_bytes(default_size)) {}

StackPool::~StackPool() {
  for (const Slab& s : slabs_)
    if (!s.keep) ::munmap(s.base, s.bytes);
}

void StackPool::keep_mapped(const Stack& s) noexcept {
#if defined(SPINDLE_ASAN)
  // What the abandoned fibre holds (its task, an exception in flight, its captures) is
  // reachable from its stack, which LeakSanitizer does not scan on its own: without
  // this, every abandoned task showed as a leak.
  __lsan_register_root_region(s.guard_end(), s.usable());  // not the guard: it faults
#endif
  std::lock_guard lk(mu_);
  for (Slab& slab : slabs_)
    if (s.base >= slab.base && s.base < slab.base + slab.bytes) slab.keep = true;
}

void StackPool::new_slab() {
  const std::size_t bytes = default_bytes_ * kSlabStacks;
  char* base = map_region(bytes);
  try {
    for (std::size_t i = 0; i < kSlabStacks; ++i) install_guard(base + i * default_bytes_);
  } catch (...) {
    ::munmap(base, bytes);
    throw;
  }
  slabs_.push_back({base, bytes, false});
  for (std::size_t i = kSlabStacks; i-- > 0;) free_.push_back({base + i * default_bytes_, default_bytes_});
  made_ += kSlabStacks;
}

Stack StackPool::take_shared() {
  std::lock_guard lk(mu_);
  if (free_.empty()) new_slab();
  Stack s = free_.back();
  free_.pop_back();
  return s;
}

void StackPool::give_shared(const Stack* s, std::size_t n) {
  std::lock_guard lk(mu_);
  free_.insert(free_.end(), s, s + n);
}

Stack StackPool::take_custom(std::size_t size) {
  size = mapping_bytes(size);
  char* base = map_region(size);
  try {
    install_guard(base);
  } catch (...) {
    ::munmap(base, size);
    throw;
  }
  return {base, size};
}

void StackPool::give_custom(const Stack& s) noexcept { ::munmap(s.base, s.size); }

std::size_t StackPool::stacks_made() const {
  std::lock_guard lk(mu_);
  return made_;
}

StackCache::~StackCache() {
  if (!cache_.empty()) pool_.give_shared(cache_.data(), cache_.size());
}

namespace {
// A stack that ran a fibre to its end still carries that fibre's ASan shadow (its
// frames' scopes were never closed by returns); clear it before the stack is reused.
void unpoison(const Stack& s) noexcept {
#if defined(SPINDLE_ASAN)
  __asan_unpoison_memory_region(s.guard_end(), s.usable());
#else
  (void)s;
#endif
}
}  // namespace

Stack StackCache::take(std::size_t size) {
  // A size that rounds to the default one is the default: a slab's stack, not a mapping
  // of its own that give() would then take for a slab's.
  if (size != 0 && StackPool::rounded(size) != pool_.default_size()) {
    // A fresh mapping may sit where an old one left stale shadow: clear it as well.
    Stack c = pool_.take_custom(size);
    unpoison(c);
    return c;
  }
  if (cache_.empty()) {
    // Refill a batch at once so the shared lock is taken once per kBatch fibres.
    for (std::size_t i = 0; i < kBatch; ++i) cache_.push_back(pool_.take_shared());
  }
  Stack s = cache_.back();
  cache_.pop_back();
  unpoison(s);
  return s;
}

void StackCache::give(const Stack& s) noexcept {
  if (!pool_.is_default(s)) {
    pool_.give_custom(s);
    return;
  }
  try {
    cache_.push_back(s);
  } catch (...) {
    pool_.give_shared(&s, 1);  // could not grow the cache: hand it straight back
    return;
  }
  if (cache_.size() > kMax) {
    pool_.give_shared(cache_.data() + cache_.size() - kBatch, kBatch);
    cache_.resize(cache_.size() - kBatch);
  }
}

}  // namespace spindle::detail
