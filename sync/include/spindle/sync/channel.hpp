// spindle::Channel<T> — a stream of values from senders to receivers (asyncio's
// `async for` over a producer; Go's channels), bounded or unbounded, closable, for tasks
// on any worker and for foreign threads. Range-for receives until closed and drained.
//
// Design: a ring of slots with a send side and a receive side, each with its own lock
// on its own cache line, so that senders and receivers running on different workers
// touch each other's lines only to pass items — the two-lock queue of Michael & Scott
// ("Simple, Fast, and Practical Non-Blocking and Blocking Concurrent Queue Algorithms",
// PODC '96), over a ring, with each side caching the other's index. An uncontended send
// or recv is one lock RMW, a slot move and two plain stores.
//
//   send side (tx_, under tx_.lock): tail, the producer's cached view of head, the
//       waiting senders, the closed flag, and `recv_waiting` (the number of receivers
//       queued on the other side, which every send reads).
//   recv side (rx_, under rx_.lock): head, the consumer's cached view of tail, the
//       waiting receivers, and `send_waiting`.
//   tail / head: monotonic counts of items published / taken. Slot i % slots holds item
//       i while head <= i < tail. Only the tx lock holder stores tail (release, after
//       constructing the slot); only the rx lock holder stores head (release, after
//       destroying the slot); the other side loads them with acquire.
//   growth: the ring starts small (at most kFirstRing slots) and doubles when it is full
//       and the capacity allows more (always, when unbounded), with both locks held
//       (always tx, then rx: the only nesting in this file, so no lock-order cycle).
//
// Waiting is a direct hand-off (see wait_list.hpp): a receiver that finds the ring empty
// queues on the recv side; whoever next finds it queued and an item in the ring pops the
// item into the receiver's slot, unlinks it and notifies it. A sender that finds the ring
// full queues on the send side with a pointer to its item; whoever next makes room moves
// the item in on its behalf. Waiters are thus served in arrival order and a newcomer
// never overtakes them (it queues behind, or serves them first). A waiter that serves
// itself (it re-checks after queueing) is not notified: a task never notifies itself.
//
// No lost wake-up, without a fence on the fast paths: a receiver that queues bumps
// `recv_waiting` under the rx lock, then takes and drops the tx lock, then re-checks for
// items. A sender reads `recv_waiting` while still holding the tx lock, after publishing
// its item. The tx lock orders the two critical sections: either the sender's comes
// first, and the receiver's re-check sees its item; or the receiver's comes first, and
// the sender sees the count and serves it. The same argument, mirrored through the rx
// lock, covers senders waiting for room.
//
// Cancellation: a waiter cancelled while still queued leaves without a trace (a cancelled
// send inserts nothing; the caller keeps its value). A receiver that was handed an item
// before it ran again (before or after the cancel) returns the item (it is never
// dropped); a sender whose item was already moved in returns normally; the cancellation
// is raised at the task's next suspension point. So send/recv raising CancelledError
// moved nothing; returning, they did. A waiter released by close() and cancelled raises
// CancelledError.
//
// Close: sets the flag under the tx lock (no send can succeed after it), fails the
// waiting senders with ChannelClosed (their items are not inserted), then lets receivers
// drain what is buffered; receivers that find it closed and empty get std::nullopt.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <spindle/errors.hpp>
#include <spindle/sync/wait_list.hpp>

namespace spindle {

/// A send on a closed channel.
class ChannelClosed : public detail::ErrorOf<std::runtime_error> {
 public:
  ChannelClosed() : ErrorOf("channel is closed") {}
};

/// What try_send() did.
enum class SendStatus : uint8_t {
  sent,    ///< the value was moved into the channel
  full,    ///< no room (or senders are already waiting): the value is untouched
  closed,  ///< the channel is closed: the value is untouched
};
/// What try_recv() did.
enum class RecvStatus : uint8_t {
  received,  ///< a value was moved out
  empty,     ///< nothing to receive now
  closed,    ///< closed and drained: nothing will ever come
};

template <class T>
class Channel {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "spindle::Channel moves values under its locks: T must be nothrow-move-constructible");

 public:
  /// A channel holding at most `capacity` values; 0 means unbounded.
  explicit Channel(std::size_t capacity = 0);
  /// Destroys the values still buffered. Destroying a channel that has waiters is
  /// undefined.
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  /// Sends a value, waiting (in arrival order) while the channel is full: suspends a
  /// fibre, blocks a foreign thread. Throws ChannelClosed if the channel is (or becomes,
  /// while waiting) closed, CancelledError if the task is cancelled while waiting; then
  /// nothing was sent and `v` is untouched. Any thread.
  void send(T&& v, std::source_location where = std::source_location::current());
  void send(const T& v, std::source_location where = std::source_location::current()) {
    T copy(v);
    send(std::move(copy), where);
  }
  /// Sends without waiting; `v` is moved from only when the result is `sent`. Any thread.
  [[nodiscard]] SendStatus try_send(T&& v);
  [[nodiscard]] SendStatus try_send(const T& v) {
    T copy(v);
    return try_send(std::move(copy));
  }

  /// Receives the next value, waiting while the channel is empty; std::nullopt once it is
  /// closed and drained. Throws CancelledError if the task is cancelled while waiting
  /// (but a value already handed to it is returned, never dropped). Any thread.
  std::optional<T> recv(std::source_location where = std::source_location::current());
  /// Receives without waiting. Any thread.
  [[nodiscard]] RecvStatus try_recv(T& out);
  std::optional<T> try_recv() {
    std::optional<T> out;
    (void)take_now(out);
    return out;
  }

  /// Closes the channel: later and waiting sends throw ChannelClosed; receivers get what
  /// is buffered, then std::nullopt. Idempotent; any thread; never throws.
  void close() noexcept;
  /// Whether close() was called. Any thread.
  bool closed() const noexcept {
    // acquire: pairs with close()'s release, so whatever preceded close() is visible.
    return tx_.closed.load(std::memory_order_acquire);
  }
  /// Values buffered now (a snapshot).
  std::size_t size() const noexcept {
    // A snapshot. acquire on head: pairs with pop_locked's release, so the tail we load
    // next is at least the one that consumer saw — never behind head.
    const uint64_t h = rx_.head.load(std::memory_order_acquire);
    const uint64_t t = tx_.tail.load(std::memory_order_relaxed);  // relaxed: see above
    return static_cast<std::size_t>(t - h);
  }
  bool empty() const noexcept { return size() == 0; }
  /// The capacity given at construction (0: unbounded).
  std::size_t capacity() const noexcept { return tx_.limit == kUnbounded ? 0 : static_cast<std::size_t>(tx_.limit); }

  /// Range-for support: each step is a recv(); the range ends when recv() returns nullopt.
  /// Waits are attributed (Task::where) to the line of the range-for.
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    T& operator*() const { return *cur_; }
    T* operator->() const { return &*cur_; }
    iterator& operator++() {
      cur_ = ch_->recv(where_);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return !it.cur_.has_value(); }

   private:
    friend class Channel;
    iterator(Channel* ch, std::source_location where) : ch_(ch), where_(where), cur_(ch->recv(where)) {}
    Channel* ch_ = nullptr;
    std::source_location where_;
    mutable std::optional<T> cur_;
  };
  iterator begin(std::source_location where = std::source_location::current()) { return iterator(this, where); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  static constexpr uint64_t kUnbounded = UINT64_MAX;
  static constexpr uint64_t kFirstRing = 4096;  // most slots allocated up front
  enum : uint8_t { kDone = 1, kClosed = 2 };
  enum class Fast : uint8_t { done, done_serve, wait };  // how a fast path ended
  struct RecvWaiter : detail::sync::SyncWaiter {
    detail::ResultSlot<T> slot;  // constructed by the server when reason == kDone
  };
  struct SendWaiter : detail::sync::SyncWaiter {
    T* item = nullptr;  // moved into the ring by the server when reason == kDone
  };

  struct alignas(64) SendSide {
    detail::sync::SpinLock lock;
    std::atomic<uint64_t> tail{0};  // stored under `lock` only
    uint64_t cached_head = 0;       // under lock: a head seen earlier (<= the real one)
    uint64_t limit = 0;             // capacity, or kUnbounded (constant)
    T* buf = nullptr;               // under lock (replaced only with both locks held)
    uint64_t mask = 0;
    detail::sync::WaitQueue waiters;  // senders waiting for room; under lock
    // Receivers queued on the recv side. Changed under rx_.lock; read here under
    // tx_.lock after every push (see the file comment for why that cannot miss one).
    std::atomic<uint32_t> recv_waiting{0};
    std::atomic<bool> closed{false};  // stored under `lock`
  };
  struct alignas(64) RecvSide {
    detail::sync::SpinLock lock;
    std::atomic<uint64_t> head{0};  // stored under `lock` only
    uint64_t cached_tail = 0;       // under lock: a tail seen earlier (<= the real one)
    T* buf = nullptr;               // under lock (replaced only with both locks held)
    uint64_t mask = 0;
    detail::sync::WaitQueue waiters;        // receivers waiting for a value; under lock
    std::atomic<uint32_t> send_waiting{0};  // senders queued; changed under tx_.lock
  };

  // Under tx_.lock: moves v into the ring unless the channel is full; grows the ring if needed.
  bool push_locked(T& v);
  // Under rx_.lock: moves the next value into `out` (an optional or a waiter's slot).
  template <class Out>
  bool pop_locked(Out& out) noexcept;
  // Under tx_.lock, both locks held: doubles the ring.
  void grow_locked();
  // Serve the queued receivers (under rx_.lock) / senders (under tx_.lock) from the ring.
  // Each returns true if it moved values *and* the other side has waiters to serve.
  // `self`, if given, is the caller's own waiter: if it gets served, *self_served is set
  // and it is not notified (a task never notifies itself: that would only leave a stale
  // wake-up request on it).
  bool serve_receivers(detail::sync::SyncWaiter* self = nullptr, bool* self_served = nullptr) noexcept;
  bool serve_senders(detail::sync::SyncWaiter* self = nullptr, bool* self_served = nullptr) noexcept;
  // After a push (towards_receivers) or a pop, serves waiters until nothing moves.
  void settle(bool towards_receivers);
  RecvStatus take_now(std::optional<T>& out);
  std::optional<T> recv_slow(std::source_location where);
  void send_slow(T& v, std::source_location where);

  SendSide tx_;
  RecvSide rx_;
};

// ---- construction -------------------------------------------------------------------

template <class T>
Channel<T>::Channel(std::size_t capacity) {
  // The ring starts at the capacity rounded up to a power of two, but at most kFirstRing
  // slots: a large bound is not paid for until it is used (the ring doubles on demand).
  uint64_t slots = 16;
  while (slots < capacity && slots < kFirstRing) slots <<= 1;
  tx_.limit = capacity == 0 ? kUnbounded : capacity;
  tx_.buf = rx_.buf = std::allocator<T>().allocate(slots);
  tx_.mask = rx_.mask = slots - 1;
}

template <class T>
Channel<T>::~Channel() {
  const uint64_t t = tx_.tail.load(std::memory_order_relaxed);  // relaxed: no one else is left
  for (uint64_t i = rx_.head.load(std::memory_order_relaxed); i != t; ++i) std::destroy_at(&rx_.buf[i & rx_.mask]);
  std::allocator<T>().deallocate(rx_.buf, rx_.mask + 1);
}

// ---- the ring -----------------------------------------------------------------------

template <class T>
bool Channel<T>::push_locked(T& v) {
  // relaxed: only tx lock holders store tail, and the lock orders them.
  const uint64_t t = tx_.tail.load(std::memory_order_relaxed);
  const uint64_t slots = tx_.mask + 1;
  if (t - tx_.cached_head >= (tx_.limit < slots ? tx_.limit : slots)) {
    // acquire: pairs with the release store of head in pop_locked(), so the slot we are
    // about to reuse has been destroyed.
    tx_.cached_head = rx_.head.load(std::memory_order_acquire);
    const uint64_t used = t - tx_.cached_head;
    if (used >= tx_.limit) return false;  // full (never, unbounded)
    if (used >= slots) grow_locked();     // the ring is full, the bound is not
  }
  std::construct_at(&tx_.buf[t & tx_.mask], std::move(v));
  // release: the slot's contents are visible to whoever loads this tail with acquire.
  tx_.tail.store(t + 1, std::memory_order_release);
  return true;
}

template <class T>
template <class Out>
bool Channel<T>::pop_locked(Out& out) noexcept {
  // relaxed: only rx lock holders store head, and the lock orders them.
  const uint64_t h = rx_.head.load(std::memory_order_relaxed);
  if (h == rx_.cached_tail) {
    // acquire: pairs with the release store of tail in push_locked(): the slot is built.
    rx_.cached_tail = tx_.tail.load(std::memory_order_acquire);
    if (h == rx_.cached_tail) return false;
  }
  T* slot = &rx_.buf[h & rx_.mask];
  out.emplace(std::move(*slot));
  std::destroy_at(slot);
  // release: the slot is free for a sender that loads this head with acquire.
  rx_.head.store(h + 1, std::memory_order_release);
  return true;
}

template <class T>
void Channel<T>::grow_locked() {
  std::lock_guard g(rx_.lock);                                  // tx -> rx: the one nesting order
  const uint64_t h = rx_.head.load(std::memory_order_relaxed);  // relaxed: we hold rx
  const uint64_t t = tx_.tail.load(std::memory_order_relaxed);  // relaxed: we hold tx
  const uint64_t slots = (tx_.mask + 1) * 2;
  T* nb = std::allocator<T>().allocate(slots);  // may throw: nothing changed yet
  for (uint64_t i = h; i != t; ++i) {
    T* from = &tx_.buf[i & tx_.mask];
    std::construct_at(&nb[i & (slots - 1)], std::move(*from));
    std::destroy_at(from);
  }
  std::allocator<T>().deallocate(tx_.buf, tx_.mask + 1);
  tx_.buf = rx_.buf = nb;
  tx_.mask = rx_.mask = slots - 1;
  tx_.cached_head = h;
}

// ---- serving waiters ----------------------------------------------------------------

template <class T>
bool Channel<T>::serve_receivers(detail::sync::SyncWaiter* self, bool* self_served) noexcept {
  detail::sync::WakeList wake;
  std::lock_guard g(rx_.lock);
  // acquire: pairs with close()'s release. Read before looking at the ring: if it is
  // closed now, every value ever sent is already published.
  const bool closed = tx_.closed.load(std::memory_order_acquire);
  bool moved = false;
  while (!rx_.waiters.empty()) {
    auto* r = static_cast<RecvWaiter*>(rx_.waiters.front());
    if (!pop_locked(r->slot)) break;
    rx_.waiters.pop_front();
    // relaxed: changed only under rx_.lock; senders read it under tx_.lock (file comment).
    tx_.recv_waiting.fetch_sub(1, std::memory_order_relaxed);
    r->reason = kDone;
    if (r == self) {
      *self_served = true;
    } else {
      wake.add(r);
    }
    moved = true;
  }
  if (closed && !rx_.waiters.empty()) {
    // Closed and drained: nothing will ever come for the rest.
    while (detail::sync::SyncWaiter* r = rx_.waiters.pop_front()) {
      tx_.recv_waiting.fetch_sub(1, std::memory_order_relaxed);  // relaxed: as above
      r->reason = kClosed;
      if (r == self) {
        *self_served = true;
      } else {
        wake.add(r);
      }
    }
  }
  // relaxed: changed only under tx_.lock... and read under rx_.lock; see the file comment.
  return moved && rx_.send_waiting.load(std::memory_order_relaxed) != 0;
}

template <class T>
bool Channel<T>::serve_senders(detail::sync::SyncWaiter* self, bool* self_served) noexcept {
  detail::sync::WakeList wake;
  std::lock_guard g(tx_.lock);
  bool moved = false;
  while (!tx_.waiters.empty()) {
    auto* s = static_cast<SendWaiter*>(tx_.waiters.front());
    bool pushed;
    try {
      pushed = push_locked(*s->item);
    } catch (...) {
      // No memory to grow the ring: the sender stays queued, its value untouched, and is
      // served by a later pop.
      pushed = false;
    }
    if (!pushed) break;
    tx_.waiters.pop_front();
    // relaxed: changed only under tx_.lock; receivers read it under rx_.lock.
    rx_.send_waiting.fetch_sub(1, std::memory_order_relaxed);
    s->reason = kDone;
    if (s == self) {
      *self_served = true;
    } else {
      wake.add(s);
    }
    moved = true;
  }
  // relaxed: see the file comment (read under tx_.lock after publishing).
  return moved && tx_.recv_waiting.load(std::memory_order_relaxed) != 0;
}

template <class T>
void Channel<T>::settle(bool towards_receivers) {
  for (;;) {
    if (towards_receivers) {
      if (!serve_receivers()) return;
    } else {
      if (!serve_senders()) return;
    }
    towards_receivers = !towards_receivers;
  }
}

// ---- send ---------------------------------------------------------------------------

template <class T>
void Channel<T>::send(T&& v, std::source_location where) {
  Fast f;
  {
    std::lock_guard g(tx_.lock);
    // relaxed: the flag is stored under this lock.
    if (tx_.closed.load(std::memory_order_relaxed)) throw ChannelClosed();
    if (tx_.waiters.empty() && push_locked(v)) {
      // relaxed: read under tx_.lock after publishing; see the file comment.
      f = tx_.recv_waiting.load(std::memory_order_relaxed) != 0 ? Fast::done_serve : Fast::done;
    } else {
      f = Fast::wait;
    }
  }
  if (f == Fast::done_serve) settle(true);
  if (f == Fast::wait) send_slow(v, where);
}

template <class T>
void Channel<T>::send_slow(T& v, std::source_location where) {
  SendWaiter w;
  w.item = &v;
  {
    bool receivers = false, queued = false;
    {
      std::lock_guard g(tx_.lock);
      // relaxed: stored under this lock.
      if (tx_.closed.load(std::memory_order_relaxed)) throw ChannelClosed();
      if (tx_.waiters.empty() && push_locked(v)) {
        receivers = tx_.recv_waiting.load(std::memory_order_relaxed) != 0;  // relaxed: file comment
      } else {
        tx_.waiters.push_back(&w);
        // relaxed: receivers read it under rx_.lock; the empty rx section below orders it.
        rx_.send_waiting.fetch_add(1, std::memory_order_relaxed);
        queued = true;  // (w.linked may change as soon as the lock is released)
      }
    }
    if (!queued) {
      if (receivers) settle(true);
      return;
    }
  }
  // A receiver may have made room after we looked: pass through the rx lock (which
  // orders us against every pop), then serve the send queue ourselves.
  { std::lock_guard g(rx_.lock); }
  bool mine = false;
  if (serve_senders(&w, &mine)) settle(true);
  detail::sync::Parked p = detail::sync::Parked::served;
  if (!mine) {
    p = detail::sync::park(w, tx_.lock, tx_.waiters, where, [this] {
      rx_.send_waiting.fetch_sub(1, std::memory_order_relaxed);  // relaxed: as above
    });
    if (p == detail::sync::Parked::cancelled) w.raise_cancelled();  // nothing inserted; v untouched
  }
  if (w.reason == kClosed) {
    if (p == detail::sync::Parked::served_late) w.raise_cancelled();  // nothing inserted either way
    throw ChannelClosed();
  }
  // else v was moved in on our behalf (served_late: the send stands; the cancellation
  // is raised at the next suspension point)
}

template <class T>
SendStatus Channel<T>::try_send(T&& v) {
  bool receivers;
  {
    std::lock_guard g(tx_.lock);
    // relaxed: stored under this lock.
    if (tx_.closed.load(std::memory_order_relaxed)) return SendStatus::closed;
    if (!tx_.waiters.empty() || !push_locked(v)) return SendStatus::full;
    receivers = tx_.recv_waiting.load(std::memory_order_relaxed) != 0;  // relaxed: file comment
  }
  if (receivers) settle(true);
  return SendStatus::sent;
}

// ---- recv ---------------------------------------------------------------------------

template <class T>
std::optional<T> Channel<T>::recv(std::source_location where) {
  std::optional<T> out;
  Fast f;
  {
    std::lock_guard g(rx_.lock);
    if (rx_.waiters.empty() && pop_locked(out)) {
      // relaxed: read under rx_.lock after the pop; see the file comment.
      f = rx_.send_waiting.load(std::memory_order_relaxed) != 0 ? Fast::done_serve : Fast::done;
    } else {
      f = Fast::wait;
    }
  }
  if (f == Fast::done_serve) settle(false);
  if (f == Fast::wait) return recv_slow(where);
  return out;
}

template <class T>
RecvStatus Channel<T>::take_now(std::optional<T>& out) {
  bool senders = false;
  RecvStatus st;
  {
    detail::sync::WakeList wake;
    std::lock_guard g(rx_.lock);
    // acquire: pairs with close()'s release; read before the ring (see serve_receivers).
    const bool closed = tx_.closed.load(std::memory_order_acquire);
    if (rx_.waiters.empty() && pop_locked(out)) {
      senders = rx_.send_waiting.load(std::memory_order_relaxed) != 0;  // relaxed: file comment
      st = RecvStatus::received;
    } else {
      // Receivers are queued (so the ring was empty when they looked), or it is empty.
      st = closed && rx_.waiters.empty() ? RecvStatus::closed : RecvStatus::empty;
    }
  }
  if (senders) settle(false);
  return st;
}

template <class T>
RecvStatus Channel<T>::try_recv(T& out) {
  std::optional<T> v;
  const RecvStatus st = take_now(v);
  if (st == RecvStatus::received) out = std::move(*v);
  return st;
}

template <class T>
std::optional<T> Channel<T>::recv_slow(std::source_location where) {
  RecvWaiter w;
  {
    std::optional<T> out;
    bool senders = false, queued = false;
    {
      std::lock_guard g(rx_.lock);
      // acquire: pairs with close()'s release; read before the ring (see serve_receivers).
      const bool closed = tx_.closed.load(std::memory_order_acquire);
      if (rx_.waiters.empty() && pop_locked(out)) {
        senders = rx_.send_waiting.load(std::memory_order_relaxed) != 0;  // relaxed: file comment
      } else if (closed && rx_.waiters.empty()) {
        return std::nullopt;
      } else {
        rx_.waiters.push_back(&w);
        // relaxed: senders read it under tx_.lock; the empty tx section below orders it.
        tx_.recv_waiting.fetch_add(1, std::memory_order_relaxed);
        queued = true;  // (w.linked may change as soon as the lock is released)
      }
    }
    if (!queued) {
      if (senders) settle(false);
      return out;
    }
  }
  // A sender may have published after we looked: pass through the tx lock (which orders
  // us against every push), then serve the receive queue ourselves.
  { std::lock_guard g(tx_.lock); }
  bool mine = false;
  if (serve_receivers(&w, &mine)) settle(false);
  detail::sync::Parked p = detail::sync::Parked::served;
  if (!mine) {
    p = detail::sync::park(w, rx_.lock, rx_.waiters, where, [this] {
      tx_.recv_waiting.fetch_sub(1, std::memory_order_relaxed);  // relaxed: as above
    });
    if (p == detail::sync::Parked::cancelled) w.raise_cancelled();
  }
  if (w.reason == kClosed) {
    if (p == detail::sync::Parked::served_late) w.raise_cancelled();  // nothing to hand over
    return std::nullopt;
  }
  // served_late: the value is ours: deliver it, never drop it; the cancellation is
  // raised at the next suspension point.
  std::optional<T> out(std::move(w.slot.get()));
  w.slot.destroy();
  return out;
}

// ---- close --------------------------------------------------------------------------

template <class T>
void Channel<T>::close() noexcept {
  {
    detail::sync::WakeList wake;
    std::lock_guard g(tx_.lock);
    if (tx_.closed.load(std::memory_order_relaxed)) return;  // relaxed: stored under this lock
    // release: every value published before this is visible to whoever sees the flag.
    tx_.closed.store(true, std::memory_order_release);
    while (detail::sync::SyncWaiter* s = tx_.waiters.pop_front()) {
      rx_.send_waiting.fetch_sub(1, std::memory_order_relaxed);  // relaxed: changed under tx_.lock
      s->reason = kClosed;
      wake.add(s);
    }
  }
  // Receivers queued on an empty ring learn that nothing more will come.
  (void)serve_receivers();
}

}  // namespace spindle
