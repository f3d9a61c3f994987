// The process pool's wire format, decoded apart from the sockets that carry it, so that
// it can be tested alone (tests/fuzz/process_wire.cpp feeds it arbitrary bytes).
//
//   request  = u32 name length, u32 signature length, u64 payload length,
//              name, signature, payload
//   response = u8 status (0 ok, 1 the function threw, 2 unknown name, 3 the arguments
//              do not match the function's parameters), u64 length, bytes
//
// The signature is the arguments' type tags, each ended by '\0' (signature_of in
// <spindle/executors/process_pool.hpp>): the worker checks the count and types of the
// arguments against the function's before it decodes the payload.
//
// Integers are in the host's byte order: both ends are the same program on one machine.
// The decoders read through `recv(void* p, std::size_t n) -> Io`, which receives exactly
// n bytes or says why not (process_pool.cpp's recv_all over the socket).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace spindle::detail {

enum class Io { ok, eof, error, timeout };

/// Receives a length-prefixed field's n bytes into out. The length is a claim, not a
/// promise: out grows with the bytes that arrive (64 KiB, then doubling), so a length
/// that lies (a corrupted stream, a worker writing to fd 3 on its own) costs 64 KiB or
/// twice what was really received before the stream ended, never the claimed size.
/// On failure out's content is unspecified (not empty if n > 0).
template <class Recv>
[[nodiscard]] Io recv_field(Recv& recv, std::string& out, uint64_t n) {
  constexpr uint64_t kFirst = 64 * 1024;
  out.clear();
  while (out.size() < n) {
    const std::size_t have = out.size();
    const uint64_t step = have < kFirst ? kFirst : have;
    const std::size_t k = std::size_t(n - have < step ? n - have : step);
    out.resize(have + k);
    if (const Io io = recv(out.data() + have, k); io != Io::ok) return io;
  }
  return Io::ok;
}

/// Reads one request; Io::ok with name, signature and payload set, else why not.
template <class Recv>
[[nodiscard]] Io read_request(Recv& recv, std::string& name, std::string& signature, std::string& payload) {
  char head[16];
  if (const Io io = recv(head, sizeof head); io != Io::ok) return io;
  uint32_t nlen, slen;
  uint64_t plen;
  std::memcpy(&nlen, head, 4);
  std::memcpy(&slen, head + 4, 4);
  std::memcpy(&plen, head + 8, 8);
  if (const Io io = recv_field(recv, name, nlen); io != Io::ok) return io;
  if (const Io io = recv_field(recv, signature, slen); io != Io::ok) return io;
  return recv_field(recv, payload, plen);
}

constexpr uint8_t kMaxStatus = 3;

/// Reads one response; Io::ok with status (0 to kMaxStatus) and body set, Io::error for
/// an unknown status, else why not.
template <class Recv>
[[nodiscard]] Io read_response(Recv& recv, uint8_t& status, std::string& body) {
  if (const Io io = recv(&status, 1); io != Io::ok) return io;
  uint64_t len;
  if (const Io io = recv(&len, 8); io != Io::ok) return io;
  if (status > kMaxStatus) return Io::error;
  return recv_field(recv, body, len);
}

}  // namespace spindle::detail
