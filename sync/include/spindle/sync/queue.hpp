// spindle::Queue, spindle::PriorityQueue, spindle::LifoQueue — asyncio's queues (with
// Python 3.13's shutdown), for tasks on any worker and for foreign threads.
//
// Owns:        the items (a deque, a heap or a stack: the Store), the FIFO queues of
//              waiting getters, putters and joiners, the unfinished-task count and the
//              shut-down flag — all under one SpinLock `mu_`, held for a few operations
//              and never across a suspension.
// Hand-off:    a put() that finds getters waiting gives its item straight to the first
//              one (the store is then empty, so this is also the item a priority or LIFO
//              order would pick). A get() that frees a slot while putters wait moves the
//              first putter's item into the store on its behalf. So waiters are served
//              in arrival order and no newcomer overtakes them.
// Invariants:  getters wait only while the store is empty; putters only while it is
//              full (maxsize > 0). unfinished_ counts items put and not yet task_done().
// Cancellation:a getter or putter cancelled while still queued leaves without a trace (a
//              cancelled put inserts nothing; the caller keeps its item). A getter that was
//              handed an item before it ran again (before or after the cancel) returns
//              the item — it is never dropped, nor put back out of order — and the
//              cancellation is raised at its next suspension point; a putter whose item
//              was already inserted returns normally likewise. So get/put raising
//              CancelledError moved nothing; returning, they did. A waiter released by
//              shutdown() and cancelled raises CancelledError; join() raises whenever
//              cancelled (asyncio: an Event wait).
// Threads:     every member may be called from any thread.
// Items:       T must be nothrow-move-constructible (items are moved under the lock);
//              a PriorityQueue's comparison must not throw. Items discarded by
//              shutdown(immediate) are destroyed after the lock is released.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <source_location>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include <spindle/errors.hpp>
#include <spindle/sync/wait_list.hpp>

namespace spindle {

/// put_nowait() on a full queue (asyncio.QueueFull).
class QueueFull : public detail::ErrorOf<std::runtime_error> {
 public:
  QueueFull() : ErrorOf("queue is full") {}
};
/// get_nowait() on an empty queue (asyncio.QueueEmpty).
class QueueEmpty : public detail::ErrorOf<std::runtime_error> {
 public:
  QueueEmpty() : ErrorOf("queue is empty") {}
};
/// A put after shutdown(), or a get once the queue is shut down and empty
/// (asyncio.QueueShutDown, Python 3.13).
class QueueShutDown : public detail::ErrorOf<std::runtime_error> {
 public:
  QueueShutDown() : ErrorOf("queue is shut down") {}
};

namespace detail {

// The three orders. Each holds its items in a standard container; pop() moves the next
// item out.
template <class T>
struct FifoStore {
  std::deque<T> c;
  void push(T&& v) { c.push_back(std::move(v)); }
  T pop() noexcept {
    T v = std::move(c.front());
    c.pop_front();
    return v;
  }
};
template <class T>
struct LifoStore {
  std::vector<T> c;
  void push(T&& v) { c.push_back(std::move(v)); }
  T pop() noexcept {
    T v = std::move(c.back());
    c.pop_back();
    return v;
  }
};
// A binary heap whose top is the smallest item by Compare (asyncio's heapq order).
template <class T, class Compare>
struct HeapStore {
  std::vector<T> c;
  [[no_unique_address]] Compare comp;
  HeapStore() = default;
  explicit HeapStore(Compare cmp) : comp(std::move(cmp)) {}
  auto greater() const {
    return [this](const T& a, const T& b) { return comp(b, a); };
  }
  void push(T&& v) {
    c.push_back(std::move(v));
    std::push_heap(c.begin(), c.end(), greater());
  }
  T pop() noexcept {
    std::pop_heap(c.begin(), c.end(), greater());
    T v = std::move(c.back());
    c.pop_back();
    return v;
  }
};

template <class T, class Store>
class BasicQueue {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "spindle queues move items under a spinlock: T must be nothrow-move-constructible");

 public:
  explicit BasicQueue(std::size_t maxsize = 0, Store store = Store()) : store_(std::move(store)), maxsize_(maxsize) {}
  BasicQueue(const BasicQueue&) = delete;
  BasicQueue& operator=(const BasicQueue&) = delete;

  /// Puts an item, waiting (in arrival order) while the queue is full: suspends a fibre,
  /// blocks a foreign thread. Throws QueueShutDown if the queue is (or becomes, while
  /// waiting) shut down, CancelledError if the task is cancelled while waiting; in both
  /// cases nothing was inserted and `item` is left as it was. Any thread.
  void put(T&& item, std::source_location where = std::source_location::current()) { put_impl(item, where); }
  void put(const T& item, std::source_location where = std::source_location::current()) {
    T copy(item);
    put_impl(copy, where);
  }
  /// Puts an item without waiting. Throws QueueFull if the queue is full (or putters are
  /// already waiting), QueueShutDown if it is shut down; `item` is then left as it was.
  void put_nowait(T&& item) { put_nowait_impl(item); }
  void put_nowait(const T& item) {
    T copy(item);
    put_nowait_impl(copy);
  }

  /// Removes and returns the next item (FIFO, smallest, or newest), waiting while the
  /// queue is empty. Throws QueueShutDown once the queue is shut down and empty (also to
  /// getters already waiting), CancelledError if the task is cancelled while waiting
  /// and no item was handed to it yet (one handed to it is returned, and the
  /// cancellation is raised at the next suspension point). Any thread.
  T get(std::source_location where = std::source_location::current());
  /// Removes and returns the next item without waiting. Throws QueueEmpty if there is
  /// none, QueueShutDown if the queue is shut down and empty.
  T get_nowait();

  /// Indicates that an item got earlier was processed: join() returns once every item
  /// put has been marked so. Throws std::invalid_argument if called more times than
  /// there were items put (asyncio's ValueError).
  void task_done();
  /// Waits until every item put has been marked with task_done() (returns at once if
  /// none is outstanding). Throws CancelledError if the task is cancelled meanwhile.
  void join(std::source_location where = std::source_location::current());

  /// Shuts the queue down (asyncio 3.13): later puts raise QueueShutDown, as do waiting
  /// putters (their items are not inserted); gets drain what is left, then raise
  /// QueueShutDown (waiting getters at once). With `immediate`, the remaining items are
  /// discarded and count as done for join(). Idempotent; any thread; never throws.
  void shutdown(bool immediate = false) noexcept;

  /// Items in the queue now (a snapshot; asyncio's qsize()).
  std::size_t qsize() const noexcept {
    std::lock_guard g(mu_);
    return store_.c.size();
  }
  bool empty() const noexcept { return qsize() == 0; }
  /// True if maxsize > 0 and the queue holds maxsize items. A snapshot.
  bool full() const noexcept {
    std::lock_guard g(mu_);
    return full_locked();
  }
  /// The bound given at construction; 0 means unbounded.
  std::size_t maxsize() const noexcept { return maxsize_; }
  /// Whether shutdown() was called.
  bool is_shut_down() const noexcept {
    std::lock_guard g(mu_);
    return shutdown_;
  }

 private:
  enum : uint8_t { kDone = 1, kShutDown = 2 };
  struct GetWaiter : sync::SyncWaiter {
    ResultSlot<T> slot;  // constructed by the putter when reason == kDone
  };
  struct PutWaiter : sync::SyncWaiter {
    T* item = nullptr;  // moved into the store by a getter when reason == kDone
  };

  bool full_locked() const noexcept { return maxsize_ > 0 && store_.c.size() >= maxsize_; }
  void put_impl(T& item, std::source_location where);
  void put_nowait_impl(T& item);
  // Under mu_: counts the item and gives it to the first getter, else stores it.
  void insert_locked(T& item, sync::WakeList& wake);
  // Under mu_: while there is room, moves waiting putters' items into the store.
  void admit_putters_locked(sync::WakeList& wake) noexcept;
  // Under mu_, store not empty: takes the next item and refills from waiting putters.
  T take_locked(sync::WakeList& wake) noexcept {
    T v = store_.pop();
    admit_putters_locked(wake);
    return v;
  }
  static void wake_all(sync::WaitQueue& q, uint8_t reason, sync::WakeList& wake) noexcept {
    while (sync::SyncWaiter* w = q.pop_front()) {
      w->reason = reason;
      wake.add(w);
    }
  }

  mutable sync::SpinLock mu_;
  Store store_;                 // guarded by mu_
  const std::size_t maxsize_;   // 0: unbounded
  std::size_t unfinished_ = 0;  // guarded by mu_
  bool shutdown_ = false;       // guarded by mu_
  sync::WaitQueue getters_;     // guarded by mu_; non-empty only while store_ is empty
  sync::WaitQueue putters_;     // guarded by mu_; non-empty only while store_ is full
  sync::WaitQueue joiners_;     // guarded by mu_; non-empty only while unfinished_ > 0
};

template <class T, class Store>
void BasicQueue<T, Store>::insert_locked(T& item, sync::WakeList& wake) {
  if (sync::SyncWaiter* w = getters_.pop_front()) {
    auto* g = static_cast<GetWaiter*>(w);
    g->slot.emplace(std::move(item));  // nothrow (static_assert above)
    g->reason = kDone;
    wake.add(g);
  } else {
    store_.push(std::move(item));  // may throw (allocation): then nothing changed
  }
  ++unfinished_;
}

template <class T, class Store>
void BasicQueue<T, Store>::admit_putters_locked(sync::WakeList& wake) noexcept {
  while (!putters_.empty() && !full_locked()) {
    auto* p = static_cast<PutWaiter*>(putters_.front());
    try {
      store_.push(std::move(*p->item));
    } catch (...) {
      // No memory for the slot: the putter stays queued (its item untouched) and is
      // admitted by a later get.
      return;
    }
    ++unfinished_;
    putters_.pop_front();
    p->reason = kDone;
    wake.add(p);
  }
}

template <class T, class Store>
void BasicQueue<T, Store>::put_impl(T& item, std::source_location where) {
  PutWaiter w;
  {
    sync::WakeList wake;
    std::lock_guard g(mu_);
    if (shutdown_) throw QueueShutDown();
    if (putters_.empty() && !full_locked()) {
      insert_locked(item, wake);
      return;
    }
    w.item = &item;
    putters_.push_back(&w);
  }
  const sync::Parked p = sync::park(w, mu_, putters_, where);
  if (p == sync::Parked::cancelled) w.raise_cancelled();  // nothing was inserted
  if (w.reason == kShutDown) {
    if (p == sync::Parked::served_late) w.raise_cancelled();  // nothing inserted either way
    throw QueueShutDown();
  }
  // Our item is in. served_late: the transfer stands; the cancellation stays pending.
}

template <class T, class Store>
void BasicQueue<T, Store>::put_nowait_impl(T& item) {
  sync::WakeList wake;
  std::lock_guard g(mu_);
  if (shutdown_) throw QueueShutDown();
  if (!putters_.empty() || full_locked()) throw QueueFull();
  insert_locked(item, wake);
}

template <class T, class Store>
T BasicQueue<T, Store>::get(std::source_location where) {
  GetWaiter w;
  {
    sync::WakeList wake;
    std::lock_guard g(mu_);
    if (store_.c.empty()) admit_putters_locked(wake);  // only after a failed allocation
    if (!store_.c.empty()) return take_locked(wake);
    if (shutdown_) throw QueueShutDown();
    getters_.push_back(&w);
  }
  const sync::Parked p = sync::park(w, mu_, getters_, where);
  if (p == sync::Parked::cancelled) w.raise_cancelled();
  if (w.reason == kShutDown) {
    if (p == sync::Parked::served_late) w.raise_cancelled();  // nothing to hand over
    throw QueueShutDown();
  }
  // served_late: we deliver the item we were handed (never dropped, never put back out
  // of order); the cancellation is raised at the next suspension point.
  T v = std::move(w.slot.get());
  w.slot.destroy();
  return v;
}

template <class T, class Store>
T BasicQueue<T, Store>::get_nowait() {
  sync::WakeList wake;
  std::lock_guard g(mu_);
  if (store_.c.empty()) admit_putters_locked(wake);
  if (!store_.c.empty()) return take_locked(wake);
  if (shutdown_) throw QueueShutDown();
  throw QueueEmpty();
}

template <class T, class Store>
void BasicQueue<T, Store>::task_done() {
  sync::WakeList wake;
  std::lock_guard g(mu_);
  if (unfinished_ == 0) throw std::invalid_argument("Queue::task_done() called too many times");
  if (--unfinished_ == 0) wake_all(joiners_, kDone, wake);
}

template <class T, class Store>
void BasicQueue<T, Store>::join(std::source_location where) {
  sync::SyncWaiter w;
  {
    std::lock_guard g(mu_);
    if (unfinished_ == 0) return;
    joiners_.push_back(&w);
  }
  // Released, but cancelled before it ran again: raise all the same (asyncio's join is
  // an Event wait); the other joiners were released too.
  if (sync::park(w, mu_, joiners_, where) != sync::Parked::served) w.raise_cancelled();
}

template <class T, class Store>
void BasicQueue<T, Store>::shutdown(bool immediate) noexcept {
  Store discarded;  // destroyed last: after the lock is released and waiters notified
  sync::WakeList wake;
  std::lock_guard g(mu_);
  shutdown_ = true;
  if (immediate) {
    const std::size_t n = store_.c.size();
    store_.c.swap(discarded.c);
    unfinished_ -= std::min(n, unfinished_);
    if (unfinished_ == 0) wake_all(joiners_, kDone, wake);
  }
  wake_all(getters_, kShutDown, wake);  // non-empty only if the store is empty
  wake_all(putters_, kShutDown, wake);  // their items are not inserted
}

}  // namespace detail

/// asyncio.Queue: first in, first out. maxsize 0 means unbounded.
template <class T>
class Queue : public detail::BasicQueue<T, detail::FifoStore<T>> {
 public:
  explicit Queue(std::size_t maxsize = 0) : detail::BasicQueue<T, detail::FifoStore<T>>(maxsize) {}
};

/// asyncio.LifoQueue: the most recently put item first. maxsize 0 means unbounded.
template <class T>
class LifoQueue : public detail::BasicQueue<T, detail::LifoStore<T>> {
 public:
  explicit LifoQueue(std::size_t maxsize = 0) : detail::BasicQueue<T, detail::LifoStore<T>>(maxsize) {}
};

/// asyncio.PriorityQueue: the smallest item by `Compare` first (std::less: lowest
/// first, as heapq; put std::pair<priority, value> for asyncio's (priority, data)
/// tuples). Equal items come out in no particular order. maxsize 0 means unbounded.
template <class T, class Compare = std::less<T>>
class PriorityQueue : public detail::BasicQueue<T, detail::HeapStore<T, Compare>> {
 public:
  explicit PriorityQueue(std::size_t maxsize = 0, Compare comp = Compare())
      : detail::BasicQueue<T, detail::HeapStore<T, Compare>>(maxsize, detail::HeapStore<T, Compare>(std::move(comp))) {}
};

}  // namespace spindle
