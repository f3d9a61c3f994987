// spindle::Future<T>: asyncio.Future for C++ — a value that will be set later, safe to
// complete and to await from any thread.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <mutex>
#include <source_location>
#include <string>
#include <utility>

#include <spindle/detail/handle.hpp>

namespace spindle {

namespace detail {
template <class T>
struct FutureState final : FutureCore {
  [[no_unique_address]] ResultSlot<T> slot;
  static void destroy(FutureCore* c) noexcept;
  static constexpr CoreOps ops_table{&destroy, nullptr};
  FutureState() noexcept : FutureCore(&ops_table) {}
};
void report_unretrieved(FutureCore* c) noexcept;
template <class T>
void FutureState<T>::destroy(FutureCore* c) noexcept {
  auto* self = static_cast<FutureState*>(c);
  const uint32_t w = c->word.load(std::memory_order_acquire);
  const auto st = static_cast<Status>((w & kStatusMask) >> kStatusShift);
  if (st == Status::exception && !(w & kRetrieved)) report_unretrieved(c);
  if (st == Status::result && !(w & kMovedOut)) self->slot.destroy();
  if (st == Status::pending) c->release_waiters();  // done callbacks that never fire
  delete c->extra();
  delete self;
}
}  // namespace detail

/// A one-shot result: pending until set_result / set_exception / cancel. Copies share
/// the same state. Every member may be called from any thread; get() suspends a fibre
/// or blocks a thread outside the runtime.
template <class T = void>
class Future : public detail::HandleBase {
 public:
  /// Makes a new pending future.
  Future() : HandleBase(new detail::FutureState<T>()) {}

  /// Sets the value. Throws InvalidStateError if already done (set twice, or cancelled).
  template <class... A>
  void set_result(A&&... value) {
    auto* s = state();
    std::unique_lock g(*s);
    if (s->status() != detail::Status::pending) {
      g.unlock();
      throw InvalidStateError("Future::set_result: the future is already done");
    }
    if constexpr (!std::is_void_v<T>) s->slot.emplace(std::forward<A>(value)...);
    g.release();  // publish_and_unlock releases it
    s->publish_and_unlock(detail::Status::result);
  }
  /// Sets an exception. Throws InvalidStateError if already done, std::invalid_argument
  /// for a null exception_ptr.
  void set_exception(std::exception_ptr e) {
    if (!e) throw std::invalid_argument("Future::set_exception: null exception_ptr");
    auto* s = state();
    std::unique_lock g(*s);
    if (s->status() != detail::Status::pending) {
      g.unlock();
      throw InvalidStateError("Future::set_exception: the future is already done");
    }
    s->extra_locked().error = std::move(e);  // may throw std::bad_alloc: g releases the lock
    g.release();                             // publish_and_unlock releases it
    s->publish_and_unlock(detail::Status::exception);
  }
  /// Cancels: waiters get CancelledError(msg). Returns false if already done.
  bool cancel(std::string msg = {}) { return state()->cancel_future(msg); }

  /// Waits for the outcome and returns the value (copied; moved out once for move-only
  /// T), or throws the exception / CancelledError. Cancelling the waiting task cancels
  /// this future too (asyncio semantics).
  T get(std::source_location where = std::source_location::current()) {
    state()->wait_done(where);
    return result();
  }
  /// The value if done; throws InvalidStateError while pending.
  T result() {
    state()->check_outcome("Future::result");
    return detail::take_result<T>(state(), state()->slot);
  }
  /// Calls fn(*this) once done, in a task of its own on the runtime of the caller (never
  /// inline in the completer). Throws RuntimeError outside a runtime. The callback does
  /// not keep the future alive: if the last handle goes while the future is pending, the
  /// callback never runs and fn (with what it captured) is destroyed then (asyncio: the
  /// future is collected and its callbacks with it). A callback on a future that is
  /// never completed must not be the only thing that keeps it alive.
  template <class Fn>
  void add_done_callback(Fn fn) const {
    add_callback_erased([fn = std::move(fn)](detail::FutureCore* c) mutable {
      Future self(ShareTag{}, c);
      fn(self);
    });
  }

 private:
  Future(ShareTag t, detail::FutureCore* c) noexcept : HandleBase(t, c) {}
  detail::FutureState<T>* state() const { return static_cast<detail::FutureState<T>*>(&core()); }
};

}  // namespace spindle
