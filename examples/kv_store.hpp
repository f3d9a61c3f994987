// The keyspace of examples/kv_server.cpp, shared by every worker: 64 shards, each an
// std::unordered_map under its own std::mutex, a key's shard chosen by its hash. A
// std::mutex rather than a spindle::Lock because every critical section here is a few
// map operations that never suspend: a fibre never waits for I/O or another task while
// holding one, so a worker blocked on it waits only for another worker's short critical
// section, and the uncontended fast path costs one atomic exchange each way.
//
// Expiry is lazy, as Redis's is on access: a key past its deadline is erased when a
// command touches it (and counts as missing). Keys that expire and are never touched
// again stay in memory (Redis also samples keys in the background; this example does not).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kv_example {

// Milliseconds on the steady clock: deadlines are relative to now, so a wall-clock
// step does not expire or revive keys.
inline int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Value {
  std::string data;
  int64_t expires_ms = 0;  // 0: never
};

// Heterogeneous lookup: find(string_view) without building a std::string.
struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
struct KeyEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};
using Map = std::unordered_map<std::string, Value, KeyHash, KeyEq>;

class Shard {
 public:
  std::mutex mu;
  // Under mu: the live value of key, or nullptr (an expired one is erased here).
  Value* find(std::string_view key, int64_t& now) {
    auto it = map.find(key);
    if (it == map.end()) return nullptr;
    if (it->second.expires_ms != 0) {
      if (now == 0) now = now_ms();
      if (it->second.expires_ms <= now) {
        map.erase(it);
        return nullptr;
      }
    }
    return &it->second;
  }
  // Under mu: key's value, made (empty, no expiry) if missing or expired.
  Value& get_or_make(std::string_view key, int64_t& now) {
    if (Value* v = find(key, now)) return *v;
    return map.try_emplace(std::string(key)).first->second;
  }
  bool erase(std::string_view key, int64_t& now) {
    if (!find(key, now)) return false;
    map.erase(map.find(key));
    return true;
  }
  Map map;
};

class Keyspace {
 public:
  static constexpr std::size_t kShards = 64;

  Shard& shard_of(std::string_view key) noexcept { return shards_[KeyHash{}(key) % kShards]; }

  // Locks the shards of several keys at once, in shard order (so two multi-key commands
  // never deadlock), making MSET and MGET atomic as in Redis. Unlocks on destruction.
  class MultiLock {
   public:
    MultiLock(Keyspace& ks, const std::vector<std::size_t>& shard_ids) : ks_(ks), ids_(shard_ids) {
      std::sort(ids_.begin(), ids_.end());
      ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
      for (std::size_t i : ids_) ks_.shards_[i].mu.lock();
    }
    ~MultiLock() {
      for (auto it = ids_.rbegin(); it != ids_.rend(); ++it) ks_.shards_[*it].mu.unlock();
    }
    MultiLock(const MultiLock&) = delete;
    MultiLock& operator=(const MultiLock&) = delete;

   private:
    Keyspace& ks_;
    std::vector<std::size_t> ids_;
  };
  std::size_t shard_id(std::string_view key) const noexcept { return KeyHash{}(key) % kShards; }
  Shard& shard(std::size_t id) noexcept { return shards_[id]; }

 private:
  std::array<Shard, kShards> shards_;
};

}  // namespace kv_example
