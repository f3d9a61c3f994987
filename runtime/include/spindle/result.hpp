// spindle::Result<T>: one outcome of gather_settled (asyncio.gather(...,
// return_exceptions=True)): a value, or the exception the task ended with (a cancelled
// task gives a CancelledError).
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <exception>
#include <functional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include <spindle/errors.hpp>

namespace spindle {

/// A value of type T or an exception. Result<void> holds std::monostate as its value; a
/// reference T is held as a std::reference_wrapper.
/// A plain value type: no thread rules beyond those of T.
template <class T>
class Result {
  using Stored = std::conditional_t<
      std::is_void_v<T>, std::monostate,
      std::conditional_t<std::is_reference_v<T>, std::reference_wrapper<std::remove_reference_t<T>>, T>>;

 public:
  /// A result holding a value.
  template <class... A>
  static Result success(A&&... a) {
    Result r;
    r.v_.template emplace<0>(std::forward<A>(a)...);
    return r;
  }
  /// A result holding an exception. Throws std::invalid_argument for a null pointer.
  static Result failure(std::exception_ptr e) {
    if (!e) throw std::invalid_argument("Result::failure: null exception_ptr");
    Result r;
    r.v_.template emplace<1>(std::move(e));
    return r;
  }

  /// True when it holds a value.
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  /// The exception, or nullptr when it holds a value.
  std::exception_ptr error() const noexcept { return ok() ? nullptr : std::get<1>(v_); }
  /// True when the exception is a CancelledError (the task was cancelled).
  bool cancelled() const noexcept {
    if (ok()) return false;
    try {
      std::rethrow_exception(std::get<1>(v_));
    } catch (const CancelledError&) {
      return true;
    } catch (...) {
      return false;
    }
  }
  /// The value; rethrows the exception when it holds one.
  decltype(auto) value() & {
    rethrow_if_error();
    if constexpr (std::is_reference_v<T>)
      return std::get<0>(v_).get();
    else if constexpr (!std::is_void_v<T>)
      return std::get<0>(v_);
  }
  decltype(auto) value() const& {
    rethrow_if_error();
    if constexpr (std::is_reference_v<T>)
      return std::get<0>(v_).get();
    else if constexpr (!std::is_void_v<T>)
      return std::get<0>(v_);
  }
  /// On an rvalue: the value moved out (a reference for a reference T).
  decltype(auto) value() && {
    rethrow_if_error();
    if constexpr (std::is_void_v<T>) {
      return;
    } else if constexpr (std::is_reference_v<T>) {
      return static_cast<T>(std::get<0>(v_).get());
    } else {
      return T(std::move(std::get<0>(v_)));
    }
  }

 private:
  Result() = default;
  void rethrow_if_error() const {
    if (!ok()) std::rethrow_exception(std::get<1>(v_));
  }
  std::variant<Stored, std::exception_ptr> v_;
};

}  // namespace spindle
