// The reference-counted handle shared by Future<T> and Task<T>, and the parts of their
// interface that do not depend on T.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <exception>
#include <functional>
#include <source_location>
#include <string>
#include <utility>

#include <spindle/detail/core.hpp>

namespace spindle::detail {

class HandleBase {
 public:
  HandleBase() noexcept = default;
  explicit HandleBase(FutureCore* c) noexcept : core_(c) {}  // adopts one reference
  HandleBase(const HandleBase& o) noexcept : core_(o.core_) {
    if (core_) core_->ref();
  }
  HandleBase(HandleBase&& o) noexcept : core_(std::exchange(o.core_, nullptr)) {}
  HandleBase& operator=(HandleBase o) noexcept {
    std::swap(core_, o.core_);
    return *this;
  }
  ~HandleBase() {
    if (core_) core_->unref();
  }

  /// True once the outcome (value, exception or cancellation) is set. Any thread.
  bool done() const { return core().done(); }
  /// True if it ended cancelled. Any thread.
  bool cancelled() const { return core().status() == Status::cancelled; }
  /// The exception it ended with (nullptr if it ended with a value). Throws
  /// InvalidStateError while pending and CancelledError if it was cancelled. Any thread.
  std::exception_ptr exception() const;
  explicit operator bool() const noexcept { return core_ != nullptr; }
  bool operator==(const HandleBase& o) const noexcept { return core_ == o.core_; }

  FutureCore* core_ptr() const noexcept { return core_; }

 protected:
  FutureCore& core() const {
    if (!core_) throw InvalidStateError("empty spindle handle (default-constructed or moved from)");
    return *core_;
  }
  /// Registers fn(core) as a done callback. fn gets the core with no reference of its
  /// own (the callback holds one while it runs): it makes its handle with share().
  void add_callback_erased(std::function<void(FutureCore*)> fn) const;
  struct ShareTag {};
  HandleBase(ShareTag, FutureCore* c) noexcept : core_(c) { c->ref(); }  // a new reference
  FutureCore* core_ = nullptr;
};

}  // namespace spindle::detail
