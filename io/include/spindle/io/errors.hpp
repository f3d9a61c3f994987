// Errors raised by spindle's streams (asyncio.IncompleteReadError, asyncio.LimitOverrunError)
// and by name resolution (socket.gaierror), each a spindle::Error (<spindle/errors.hpp>).
// OS errors are std::system_error with errno (generic_category) and the operation.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <system_error>

#include <spindle/errors.hpp>

namespace spindle {

/// The stream ended (EOF) before read_exact / read_until had what it needed.
/// `partial()` holds the bytes that were read (they are consumed from the stream).
class IncompleteReadError : public detail::ErrorOf<std::runtime_error> {
 public:
  IncompleteReadError(std::string partial, std::size_t expected)
      : ErrorOf(std::to_string(partial.size()) + " bytes read before EOF, " +
                (expected ? std::to_string(expected) + " expected" : std::string("delimiter not found"))),
        partial_(std::move(partial)),
        expected_(expected) {}
  /// What was read before EOF.
  const std::string& partial() const noexcept { return partial_; }
  /// How many bytes were expected (0 when a delimiter was awaited).
  std::size_t expected() const noexcept { return expected_; }

 private:
  std::string partial_;
  std::size_t expected_;
};

/// read_until / read_line found no delimiter within its limit. The data stays buffered in
/// the stream (read() returns it); `consumed()` is how much of it the limit covered.
class LimitOverrunError : public detail::ErrorOf<std::runtime_error> {
 public:
  LimitOverrunError(const std::string& msg, std::size_t consumed) : ErrorOf(msg), consumed_(consumed) {}
  std::size_t consumed() const noexcept { return consumed_; }

 private:
  std::size_t consumed_;
};

/// The category of getaddrinfo's EAI_* codes (name() "getaddrinfo"; message() is
/// gai_strerror's text). Any thread.
const std::error_category& gai_category() noexcept;

/// Name resolution failed (socket.gaierror): code() is the resolver's own EAI_* code
/// (EAI_NONAME for an unknown name, EAI_AGAIN for a temporary failure, ...) in
/// gai_category(), so what() reads "getaddrinfo <host>: Name or service not known".
/// EAI_SYSTEM is not a GaiError: it is reported as the std::system_error of its errno.
class GaiError : public detail::ErrorOf<std::system_error> {
 public:
  GaiError(int eai_code, std::string host)
      : ErrorOf(eai_code, gai_category(), "getaddrinfo " + host), host_(std::move(host)) {}
  /// The host name that did not resolve.
  const std::string& host() const noexcept { return host_; }

 private:
  std::string host_;
};

}  // namespace spindle
