// Fibre stacks: carved from large slabs, each with a guard page at its low end, and
// recycled through a per-worker cache so that starting a fibre never makes a syscall.
//
// Guard pages: where the kernel has MADV_GUARD_INSTALL (Linux 6.13+), a guard is a page
// table marker and costs no mapping, so a slab of 64 stacks is one mapping and the number
// of fibres is bounded by memory, not by vm.max_map_count. Otherwise the guard is made
// with mprotect, which splits the mapping in two per stack: about max_map_count / 2
// (~32k with the default 65530) live stacks at most.
//
// Threads: StackPool's shared free list and slabs are under `mu_`; a StackCache belongs
// to one worker thread and is touched only by it.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

namespace spindle::detail {

struct Stack {
  char* base = nullptr;     // lowest address of the stack mapping (the guard page)
  std::size_t size = 0;     // whole size, guard included
  char* top() const noexcept { return base + size; }
  char* guard_end() const noexcept;  // first usable byte above the guard
};

enum class GuardMode { guard_install, mprotect };

class StackPool {
 public:
  StackPool(std::size_t default_size);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  std::size_t default_size() const noexcept { return default_size_; }
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
  mutable std::mutex mu_;
  std::vector<Stack> free_;
  struct Slab { char* base; std::size_t bytes; bool keep = false; };
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
