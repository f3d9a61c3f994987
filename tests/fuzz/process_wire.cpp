// Fuzz target: the process pool's wire format (executors/src/process_wire.hpp) and the
// Codec decoders its payloads go through (<spindle/executors/process_pool.hpp>).
//
// Input: one byte choosing what to read, then the bytes a peer sent. The decoders read
// them through a recv that fails with Io::eof at the end of the input, as recv_all does
// at a socket's EOF. A request frame is (u32 name length, u32 signature length, u64
// payload length, name, signature, payload). Checked: a decoder never reads past what it was given nor takes
// more memory than the bytes it received can justify (libFuzzer's -malloc_limit_mb and
// ASan catch a length field believed blindly); a frame decoded whole encodes back to
// exactly the bytes it was read from; an unknown response status is Io::error; a Codec
// decode either throws std::runtime_error or returns a value that encodes back to the
// bytes it took.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <spindle/executors/process_pool.hpp>

#include "../../executors/src/process_wire.hpp"
#include "fuzz_check.hpp"

using spindle::detail::Io;

namespace {

// recv over the fuzz input: exactly n bytes, or Io::eof when fewer are left.
struct InputRecv {
  std::string_view in;
  std::size_t at = 0;
  Io operator()(void* p, std::size_t n) {
    if (in.size() - at < n) {
      at = in.size();
      return Io::eof;
    }
    std::memcpy(p, in.data() + at, n);
    at += n;
    return Io::ok;
  }
};

template <class T>
void put(std::string& s, const T& v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void requests(std::string_view data) {
  InputRecv recv{data};
  for (;;) {
    const std::size_t from = recv.at;
    std::string name, signature, payload;
    const Io io = spindle::detail::read_request(recv, name, signature, payload);
    if (io != Io::ok) {
      FUZZ_CHECK(io == Io::eof && recv.at == data.size());
      return;
    }
    std::string frame;
    put(frame, uint32_t(name.size()));
    put(frame, uint32_t(signature.size()));
    put(frame, uint64_t(payload.size()));
    frame += name;
    frame += signature;
    frame += payload;
    FUZZ_CHECK(frame == data.substr(from, recv.at - from));
  }
}

void responses(std::string_view data) {
  InputRecv recv{data};
  for (;;) {
    const std::size_t from = recv.at;
    uint8_t status = 0xff;
    std::string body;
    const Io io = spindle::detail::read_response(recv, status, body);
    if (io == Io::error) {
      FUZZ_CHECK(status > spindle::detail::kMaxStatus);
      return;
    }
    if (io != Io::ok) {
      FUZZ_CHECK(io == Io::eof && recv.at == data.size());
      return;
    }
    FUZZ_CHECK(status <= spindle::detail::kMaxStatus);
    std::string frame;
    put(frame, status);
    put(frame, uint64_t(body.size()));
    frame += body;
    FUZZ_CHECK(frame == data.substr(from, recv.at - from));
  }
}

// Decodes T from data; if that works, T must encode back to the bytes it took.
template <class T>
void codec(std::string_view data) {
  spindle::ByteReader r(data.data(), data.size());
  T v;
  try {
    v = spindle::Codec<T>::decode(r);
  } catch (const std::runtime_error&) {
    return;  // malformed: said so
  }
  const std::size_t took = data.size() - r.remaining();
  spindle::ByteWriter w;
  spindle::Codec<T>::encode(w, v);
  FUZZ_CHECK(w.bytes() == data.substr(0, took));
}

using Args = std::tuple<std::string, std::vector<int32_t>, std::vector<std::string>, std::pair<std::string, int64_t>,
                        std::vector<std::pair<std::string, std::vector<double>>>>;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, std::size_t size) {
  fuzz::Params in(bytes, size);
  const uint8_t what = in.byte();
  const std::string_view data = in.rest();
  switch (what % 4) {
    case 0:
      requests(data);
      break;
    case 1:
      responses(data);
      break;
    case 2:
      codec<Args>(data);
      break;
    default:
      codec<std::vector<std::vector<std::string>>>(data);
      break;
  }
  return 0;
}
