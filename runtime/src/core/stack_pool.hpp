// Fibre stacks: carved from large slabs, each with a guard region at its low end, and
// recycled through a per-worker cache so that starting a fibre never makes a syscall.
//
// Guard region: kGuardBytes (64 KiB) below every stack, never memory. An overflow is
// caught when its first touch below the stack lands in the region: always with stack
// probes (-fstack-clash-protection touches every page of a large frame in turn), and
// without them for any frame smaller than the region. A one-page guard let a frame of
// 5 KiB or more step over it into the stack below, another task's.
//
// Where the kernel has MADV_GUARD_INSTALL (Linux 6.13+), a guard is page table markers
// and costs no mapping, so a slab of 64 stacks is one mapping and the number of fibres is
// bounded by memory, not by vm.max_map_count. Otherwise the guard is made with mprotect,
// which splits the mapping in two per stack whatever the guard's size: about
// max_map_count / 2 (~32k with the default 65530) stacks made at most.
//
// Threads: StackPool's shared free list and slabs are under `mu_`; a StackCache belongs
// to one worker thread and is touched only by it.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

namespace spindle::detail {

/// Bytes of guard below every stack: a multiple of every page size Linux uses (4, 16 and
/// 64 KiB). Address space only: it is never committed.
inline constexpr std::size_t kGuardBytes = 64 * 1024;

struct Stack {
  char* base = nullptr;  // lowest address of the stack mapping (the guard region)
  std::size_t size = 0;  // whole size, guard region included
  char* top() const noexcept { return base + size; }
  char* guard_end() const noexcept { return base + kGuardBytes; }  // first usable byte
  std::size_t usable() const noexcept { return size - kGuardBytes; }
};

enum class GuardMode { guard_install, mprotect };

class StackPool {
 public:
  StackPool(std::size_t default_size);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  /// Options::stack_size rounded up to pages: the usable stack is one page less (the
  /// guard used to be one page of it), and the guard region lies below that.
  std::size_t default_size() const noexcept { return default_size_; }
  /// A requested stack size as default_size() rounds it (at least four pages).
  static std::size_t rounded(std::size_t size) noexcept;
  /// Whether `s` is a default-size stack, one of a slab's.
  bool is_default(const Stack& s) const noexcept { return s.size == default_bytes_; }
  static GuardMode guard_mode() noexcept;
  static std::size_t page_size() noexcept;

  /// A stack of the default size from the shared list (refilled from a new slab), or
  /// of `size` bytes mapped on its own. Throws std::bad_alloc / std::system_error.
  Stack take_shared();
  Stack take_custom(std::size_t size);
  void give_shared(const Stack* s, std::size_t n);
  void give_custom(const Stack& s) noexcept;
  /// The stack of a fibre that shutdown abandoned (it would not end): it stays mapped
  /// when the pool is destroyed (its whole slab does), because its frame and the
  /// Waiters it linked into futures and primitives that outlive the runtime are still
  /// read through pointers. A custom-size stack is already never unmapped (its fibre
  /// never ends). Any thread.
  void keep_mapped(const Stack& s) noexcept;

  std::size_t stacks_made() const;

 private:
  void new_slab();  // requires mu_
  std::size_t default_size_;
  std::size_t default_bytes_;  // a default stack's mapping: usable stack and guard region
  mutable std::mutex mu_;
  std::vector<Stack> free_;
  struct Slab {
    char* base;
    std::size_t bytes;
    bool keep = false;
  };
  std::vector<Slab> slabs_;
  std::size_t made_ = 0;
};

/// One worker's cache of default-size stacks.
class StackCache {
 public:
  explicit StackCache(StackPool& pool) : pool_(pool) {}
  ~StackCache();
  Stack take(std::size_t size);
  void give(const Stack& s) noexcept;
  StackPool& pool() noexcept { return pool_; }

 private:
  static constexpr std::size_t kMax = 128, kBatch = 32;
  StackPool& pool_;
  std::vector<Stack> cache_;
};

}  // namespace spindle::detail
