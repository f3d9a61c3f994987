// spindle::ProcessPool (concurrent.futures.ProcessPoolExecutor): runs registered
// functions in worker processes; arguments and results cross as bytes.
//
// What a program must do:
//   1. register each function it will call, by name, before main or at the start of it:
//        SPINDLE_PROCESS_FUNCTION(fib);                 // name "fib"
//        spindle::register_process_function("fib", &fib);
//   2. call spindle::serve_process_worker() at the start of main (after the
//      registrations; or from a static initialiser placed after them in the same file).
//      In a worker process it never returns: it serves calls, then exits.
// Workers are started by posix_spawn of /proc/self/exe (fork + exec at once: no
// fork-after-threads hazard) with SPINDLE_PROCESS_WORKER in the environment; the
// request socket is the worker's fd 3. serve_process_worker removes the marker from the
// environment and makes fd 3 close-on-exec before any call runs, so programs a called
// function starts neither inherit the socket nor act as workers. A worker's death is
// seen by its exit, even while a process it forked still holds the socket.
//
// Serialisation: Codec<T> encodes trivially copyable types, std::string, std::vector,
// std::pair and std::tuple of encodable types. Specialise spindle::Codec<T> for others:
//   template <> struct spindle::Codec<Mine> {
//     static void encode(spindle::ByteWriter& w, const Mine& v);
//     static Mine decode(spindle::ByteReader& r);   // throws on malformed input
//   };
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <spindle/executors/executor.hpp>
#include <spindle/executors/thread_pool.hpp>
#include <spindle/time_limit.hpp>

namespace spindle {

/// A worker process died (crash, abort, kill) while running a call; the call fails
/// with this and the worker is replaced (concurrent.futures.process.BrokenProcessPool).
class BrokenProcessPool : public BrokenExecutor {
 public:
  using BrokenExecutor::BrokenExecutor;
};

/// A registered function threw in its worker process: what() is "<name>: <message>".
class ProcessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Appends bytes. Any thread (one object per call).
class ByteWriter {
 public:
  void put(const void* p, std::size_t n) { buf_.append(static_cast<const char*>(p), n); }
  std::string& bytes() noexcept { return buf_; }

 private:
  std::string buf_;
};

/// Reads bytes back; throws std::runtime_error("truncated ...") past the end.
class ByteReader {
 public:
  ByteReader(const char* p, std::size_t n) noexcept : p_(p), end_(p + n) {}
  void get(void* out, std::size_t n) {
    if (n == 0) return;  // out may be null then (an empty vector's data()): no memcpy
    if (std::size_t(end_ - p_) < n) throw std::runtime_error("truncated serialised data");
    std::memcpy(out, p_, n);
    p_ += n;
  }
  std::size_t remaining() const noexcept { return std::size_t(end_ - p_); }

 private:
  const char* p_;
  const char* end_;
};

/// The serialisation extension point (see the header comment).
template <class T>
struct Codec;

template <class T>
  requires std::is_trivially_copyable_v<T>
struct Codec<T> {
  static void encode(ByteWriter& w, const T& v) { w.put(&v, sizeof v); }
  static T decode(ByteReader& r) {
    T v;
    r.get(&v, sizeof v);
    return v;
  }
};
template <>
struct Codec<std::string> {
  static void encode(ByteWriter& w, const std::string& s) {
    const uint64_t n = s.size();
    w.put(&n, sizeof n);
    w.put(s.data(), s.size());
  }
  static std::string decode(ByteReader& r) {
    uint64_t n;
    r.get(&n, sizeof n);
    if (n > r.remaining()) throw std::runtime_error("truncated serialised string");
    std::string s(n, '\0');
    r.get(s.data(), n);
    return s;
  }
};
template <class T>
struct Codec<std::vector<T>> {
  static void encode(ByteWriter& w, const std::vector<T>& v) {
    const uint64_t n = v.size();
    w.put(&n, sizeof n);
    if constexpr (std::is_trivially_copyable_v<T>) {
      w.put(v.data(), v.size() * sizeof(T));
    } else {
      for (const auto& e : v) Codec<T>::encode(w, e);
    }
  }
  static std::vector<T> decode(ByteReader& r) {
    uint64_t n;
    r.get(&n, sizeof n);
    std::vector<T> v;
    if constexpr (std::is_trivially_copyable_v<T>) {
      if (n > r.remaining() / (sizeof(T) ? sizeof(T) : 1)) throw std::runtime_error("truncated serialised vector");
      v.resize(n);
      r.get(v.data(), n * sizeof(T));
    } else {
      for (uint64_t i = 0; i < n; ++i) v.push_back(Codec<T>::decode(r));
    }
    return v;
  }
};
template <class A, class B>
  requires(!std::is_trivially_copyable_v<std::pair<A, B>>)
struct Codec<std::pair<A, B>> {
  static void encode(ByteWriter& w, const std::pair<A, B>& p) {
    Codec<A>::encode(w, p.first);
    Codec<B>::encode(w, p.second);
  }
  static std::pair<A, B> decode(ByteReader& r) {
    A a = Codec<A>::decode(r);
    B b = Codec<B>::decode(r);
    return {std::move(a), std::move(b)};
  }
};
template <class... T>
  requires(!std::is_trivially_copyable_v<std::tuple<T...>>)
struct Codec<std::tuple<T...>> {
  static void encode(ByteWriter& w, const std::tuple<T...>& t) {
    std::apply([&](const auto&... e) { (Codec<std::decay_t<decltype(e)>>::encode(w, e), ...); }, t);
  }
  static std::tuple<T...> decode(ByteReader& r) { return std::tuple<T...>{Codec<T>::decode(r)...}; }
  // (braced init: the elements are decoded left to right)
};

namespace detail {
/// Runs one call in a worker: decodes the arguments from `in`, encodes the result.
using ProcessInvoker = std::function<void(ByteReader& in, ByteWriter& out)>;
/// `signature`: the parameters' type tags (signature_of).
void register_process_invoker(std::string name, std::string signature, ProcessInvoker inv);
struct ProcessPoolState;
std::string process_pool_roundtrip(const std::shared_ptr<ProcessPoolState>& st, const std::string& name,
                                   std::string signature, std::string request);

/// The type tags of a call's arguments, as they cross the wire with it: each type's
/// mangled name (std::type_info::name), each ended by '\0'. Both ends are the same
/// program, so equal tags mean the same type; the worker compares the caller's tags with
/// the function's before decoding anything.
template <class... T>
std::string signature_of() {
  std::string s;
  ((s += typeid(T).name(), s += '\0'), ...);
  return s;
}

/// Arguments whose bytes do not decode as the function's parameters, or leave bytes
/// over (a Codec whose decode reads other than what its encode wrote). The worker
/// answers it as a bad call (std::invalid_argument in the caller), not as ProcessError.
class BadArguments : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

template <class... T>
std::tuple<T...> decode_arguments(ByteReader& in) {
  try {
    std::tuple<T...> args{Codec<T>::decode(in)...};  // braced: decoded left to right
    if (in.remaining() != 0)
      throw BadArguments(std::to_string(in.remaining()) + " byte(s) left over after the last argument");
    return args;
  } catch (const BadArguments&) {
    throw;
  } catch (const std::exception& e) {
    throw BadArguments(e.what());
  }
}
}  // namespace detail

/// Registers fn under `name` for ProcessPool::call. Call before serve_process_worker()
/// and before any pool starts (both processes must see the same registrations).
/// Throws std::invalid_argument if the name is taken. Not thread-safe: register from
/// static initialisers or the start of main.
template <class R, class... A>
void register_process_function(std::string name, R (*fn)(A...)) {
  detail::register_process_invoker(std::move(name), detail::signature_of<std::decay_t<A>...>(),
                                   [fn](ByteReader& in, ByteWriter& out) {
    auto args = detail::decode_arguments<std::decay_t<A>...>(in);
    if constexpr (std::is_void_v<R>) {
      std::apply(fn, std::move(args));
    } else {
      Codec<std::decay_t<R>>::encode(out, std::apply(fn, std::move(args)));
    }
  });
}

#define SPINDLE_PROCESS_FUNCTION(fn) \
  static const bool spindle_process_function_##fn = (::spindle::register_process_function(#fn, &fn), true)

/// In a worker process (SPINDLE_PROCESS_WORKER set by ProcessPool), serves calls until
/// the pool closes the socket, then exits the process (never returns). Elsewhere returns
/// at once. Call at the start of main, after the registrations.
void serve_process_worker();

struct ProcessPoolOptions {
  /// Worker processes, at least 1 (0 is refused, as asyncio refuses max_workers=0).
  /// By default one per CPU: std::thread::hardware_concurrency(), or 1 if unknown.
  unsigned workers = default_workers();
  /// Per-call timeout, none by default: at the deadline the worker is killed (and
  /// replaced) and the call throws TimeoutError. Zero or negative: every call throws
  /// TimeoutError without reaching a worker (as wait_for(fn, 0) does not run fn).
  TimeLimit timeout{};
  /// The program to start as a worker: it must call serve_process_worker().
  std::string executable = "/proc/self/exe";

  static unsigned default_workers() noexcept;
};

/// A pool of worker processes, started on demand (at most `workers`), each running one
/// call at a time; calls beyond that wait in FIFO order. Thread rules: every member may
/// be called from any fibre or thread; the destructor and shutdown(true) block the
/// calling thread until in-flight calls end.
class ProcessPool {
 public:
  /// Throws std::invalid_argument for 0 workers or an empty executable path.
  explicit ProcessPool(ProcessPoolOptions opts = {});
  /// shutdown(true).
  ~ProcessPool();
  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  /// Runs the function registered as `name` in a worker with args, and returns its
  /// result decoded as R. A fibre suspends (its loop goes on); a foreign thread blocks.
  /// The arguments must have exactly the function's parameter types (after decay: an
  /// `int` parameter takes an `int`, not a `double` nor a `long`; a `std::string` one a
  /// `std::string`, not a `const char*`), one per parameter.
  /// Throws std::invalid_argument if no function is registered under `name` (in the
  /// worker) or the arguments do not match its parameters (the message names the
  /// function, the parameter types and the argument types; the worker stays), ProcessError
  /// if it threw, BrokenProcessPool if its worker died, TimeoutError at the timeout, BrokenExecutor after shutdown, std::runtime_error
  /// naming the function if the result cannot be decoded as R, CancelledError if the
  /// caller is cancelled (the call is abandoned; it completes in its worker, and the
  /// pool stays healthy), std::system_error if a worker cannot be started.
  template <class R, class... A>
  R call(std::string_view name, const A&... args) {
    ByteWriter w;
    (Codec<A>::encode(w, args), ...);
    std::string reply = run_in_executor(*calls_, [st = st_, n = std::string(name), sig = detail::signature_of<A...>(),
                                                  req = std::move(w.bytes())]() mutable {
      return detail::process_pool_roundtrip(st, n, std::move(sig), std::move(req));
    });
    if constexpr (std::is_void_v<R>) {
      return;
    } else {
      try {
        ByteReader r(reply.data(), reply.size());
        R v = Codec<R>::decode(r);
        if (r.remaining() != 0) throw std::runtime_error("trailing bytes");
        return v;
      } catch (const std::exception& e) {
        throw std::runtime_error("ProcessPool: cannot decode the result of '" + std::string(name) + "': " + e.what());
      }
    }
  }

  /// Stops taking calls (later calls throw BrokenExecutor). With wait, waits for the
  /// calls in flight, then ends every worker (closes its socket, reaps it). Idempotent.
  void shutdown(bool wait = true);
  /// Worker processes alive now.
  std::size_t processes() const;
  unsigned workers() const noexcept;

 private:
  std::shared_ptr<detail::ProcessPoolState> st_;
  std::unique_ptr<ThreadPool> calls_;  // one thread per worker process in use
};

}  // namespace spindle
