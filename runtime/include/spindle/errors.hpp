// Exceptions that spindle raises. OS errors are std::system_error (errno + the
// operation); everything below is spindle's own.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <stdexcept>
#include <string>

namespace spindle {

/// Raised at the suspension point of a task that was cancelled (asyncio.CancelledError).
///
/// As in asyncio (3.8+, where CancelledError derives from BaseException), it does NOT
/// derive from std::exception, so a generic `catch (const std::exception&)` does not
/// swallow a cancellation by accident. Catch it by name if a task must clean up and go
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
class InvalidStateError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// A deadline passed (asyncio.TimeoutError / builtin TimeoutError).
class TimeoutError : public std::runtime_error {
 public:
  TimeoutError() : std::runtime_error("timed out") {}
  using std::runtime_error::runtime_error;
};

/// The runtime cannot do what was asked: there is no running runtime, or it is closed
/// (asyncio's RuntimeError("no running event loop") / "Event loop is closed").
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace spindle
