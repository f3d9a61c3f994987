// Exceptions that spindle raises. OS errors are std::system_error (errno + the
// operation); everything below is spindle's own.
//
// The hierarchy: every error spindle raises about its own operations derives from
// spindle::Error and, beside it, from the standard exception that says what kind of
// failure it is (std::runtime_error, std::logic_error, std::system_error), so
// `catch (const spindle::Error&)` takes all of them and `catch (const std::exception&)`
// still takes each. Two are left out on purpose: CancelledError (below) and
// ExceptionGroup (<spindle/task_group.hpp>).
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <stdexcept>
#include <string>

namespace spindle {

/// The base of spindle's own errors: TimeoutError, RuntimeError, InvalidStateError,
/// TaskGroupClosed, the queues' and channels' errors, BrokenBarrierError, the streams'
/// and the resolver's errors, BrokenExecutor and the process pool's. Catch it to handle
/// "spindle reported a failure" whatever the failure.
///
/// It does not derive from std::exception: each error already is one through its
/// standard base, and a second std::exception base would make that base ambiguous, so
/// that `catch (const std::exception&)` would no longer catch the error at all. (Boost's
/// boost::exception is a base of the same kind.) what() is the standard base's what().
///
/// Not an Error:
///   - CancelledError: a cancellation is not a failure. asyncio moved CancelledError out
///     of Exception so that `except Exception:` stops swallowing it; for the same reason
///     `catch (const spindle::Error&)` must let a cancellation through.
///   - ExceptionGroup: it carries the children's exceptions, which are the program's own;
///     a handler for spindle's errors must not take them for spindle's.
///   - OS errors: std::system_error with errno (GaiError, the resolver's own codes, is
///     both a std::system_error and an Error).
class Error {
 public:
  Error() = default;
  Error(const Error&) = default;
  Error& operator=(const Error&) = default;
  virtual ~Error() = default;
  /// The message (the standard base's what()).
  virtual const char* what() const noexcept = 0;
};

namespace detail {
/// A spindle Error that is also the standard exception Std: Std's constructors, and one
/// what() that answers for both bases.
template <class Std>
class ErrorOf : public Std, public Error {
 public:
  using Std::Std;
  const char* what() const noexcept override { return Std::what(); }
};
}  // namespace detail

/// Raised at the suspension point of a task that was cancelled (asyncio.CancelledError).
///
/// As in asyncio (3.8+, where CancelledError derives from BaseException), it does NOT
/// derive from std::exception, nor from spindle::Error, so neither a generic
/// `catch (const std::exception&)` nor a `catch (const spindle::Error&)` swallows a
/// cancellation by accident. Catch it by name if a task must clean up and go
/// on; a task whose body lets it escape ends *cancelled*, not failed.
class CancelledError {
 public:
  CancelledError() = default;
  explicit CancelledError(std::string message) : message_(std::move(message)) {}
  /// The message given to cancel(msg); empty when none was given.
  const std::string& message() const noexcept { return message_; }
  const char* what() const noexcept { return message_.empty() ? "cancelled" : message_.c_str(); }

 private:
  std::string message_;
};

/// An operation was not valid in the object's current state (asyncio.InvalidStateError):
/// result() on a pending future, set_result() on a finished one.
class InvalidStateError : public detail::ErrorOf<std::logic_error> {
 public:
  using ErrorOf::ErrorOf;
};

/// A deadline passed (asyncio.TimeoutError / builtin TimeoutError).
class TimeoutError : public detail::ErrorOf<std::runtime_error> {
 public:
  TimeoutError() : ErrorOf("timed out") {}
  using ErrorOf::ErrorOf;
};

/// The runtime cannot do what was asked: there is no running runtime, or it is closed
/// (asyncio's RuntimeError("no running event loop") / "Event loop is closed").
class RuntimeError : public detail::ErrorOf<std::runtime_error> {
 public:
  using ErrorOf::ErrorOf;
};

}  // namespace spindle
