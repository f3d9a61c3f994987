// spindle::ProcessPool (concurrent.futures.ProcessPoolExecutor): runs registered
// functions in worker processes; arguments and results cross as bytes.
//
// What a program must do:
//   1. register each function it will call, under a name, before main (or at the start of
//      it, before step 2): the registration is a handle that carries the signature,
//        inline const auto fib = spindle::process_function<std::uint64_t(int)>("fib", &fib_impl);
//      and a call through it is typed as a call of the function is:
//        std::uint64_t v = pool.call(fib, 30);
//      (arguments that do not convert to the parameters, or a result used as another
//      type, do not compile).
//   2. call spindle::serve_process_worker() at the start of main (after the
//      registrations; or from a static initialiser placed after them in the same file).
//      In a worker process it never returns: it serves calls, then exits.
// The worker is the same program started again: its static initialisers register the
// same names, and it finds each call's function by the name the request carries.
// Workers are started by posix_spawn of /proc/self/exe (fork + exec at once: no
// fork-after-threads hazard) with SPINDLE_PROCESS_WORKER in the environment; the
// request socket is the worker's fd 3. serve_process_worker removes the marker from the
// environment and makes fd 3 close-on-exec before any call runs, so programs a called
// function starts neither inherit the socket nor act as workers. A worker's death is
// seen by its exit, even while a process it forked still holds the socket.
//
// Serialisation: Codec<T> encodes trivially copyable types other than pointers (an
// address means nothing in another process), std::string, std::vector, std::pair and
// std::tuple of encodable types. Specialise spindle::Codec<T> for others:
//   template <> struct spindle::Codec<Mine> {
//     static void encode(spindle::ByteWriter& w, const Mine& v);
//     static Mine decode(spindle::ByteReader& r);   // throws on malformed input
//   };
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
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
class ProcessError : public detail::ErrorOf<std::runtime_error> {
 public:
  using ErrorOf::ErrorOf;
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

/// Whether T can cross to a worker process and back: Codec<T> encodes it and decodes it
/// as a T.
template <class T>
concept Serialisable = requires(ByteWriter& w, ByteReader& r, const T& v) {
  Codec<T>::encode(w, v);
  { Codec<T>::decode(r) } -> std::same_as<T>;
};

template <class T>
requires(std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_member_pointer_v<T>) struct Codec<T> {
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
requires Serialisable<T>
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
requires(!std::is_trivially_copyable_v<std::pair<A, B>> && Serialisable<A> &&
         Serialisable<B>) struct Codec<std::pair<A, B>> {
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
requires(!std::is_trivially_copyable_v<std::tuple<T...>> && (Serialisable<T> && ...)) struct Codec<std::tuple<T...>> {
  static void encode(ByteWriter& w, const std::tuple<T...>& t) {
    std::apply([&](const auto&... e) { (Codec<std::decay_t<decltype(e)>>::encode(w, e), ...); }, t);
  }
  static std::tuple<T...> decode(ByteReader& r) { return std::tuple<T...>{Codec<T>::decode(r)...}; }
  // (braced init: the elements are decoded left to right)
};

template <class Sig>
class ProcessFunction;

namespace detail {
/// Runs one call in a worker: decodes the arguments from `in`, encodes the result.
using ProcessInvoker = std::function<void(ByteReader& in, ByteWriter& out)>;
/// `signature`: the parameters' type tags (signature_of); `fn`: the function's address,
/// which tells the same function registered again under its name (not an error) from
/// another one (std::invalid_argument).
void register_process_invoker(std::string name, std::string signature, void (*fn)(), ProcessInvoker inv);
struct ProcessPoolState;
/// Runs one call on a pool's call thread: sends it to a worker, returns the reply's bytes.
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

/// Whether every value of the arithmetic type From is one of To (an int is a double's,
/// not a float's nor an unsigned's; no floating value is an integer type's).
template <class From, class To>
constexpr bool holds_every_value() noexcept {
  using F = std::numeric_limits<From>;
  using T = std::numeric_limits<To>;
  if constexpr (std::is_same_v<From, To> || std::is_same_v<From, bool>) {
    return true;
  } else if constexpr (std::is_same_v<To, bool>) {
    return false;
  } else if constexpr (std::is_integral_v<From> && std::is_integral_v<To>) {
    return (T::is_signed || !F::is_signed) && T::digits >= F::digits;
  } else if constexpr (std::is_integral_v<From>) {
    return T::digits >= F::digits;  // to a floating type: its mantissa holds every value
  } else if constexpr (std::is_integral_v<To>) {
    return false;
  } else {
    return T::digits >= F::digits && T::max_exponent >= F::max_exponent && T::min_exponent <= F::min_exponent;
  }
}

/// Whether an argument of type A may be passed for a parameter that crosses as W: it
/// converts implicitly and, to an arithmetic W, loses nothing: from an arithmetic type
/// whose every value is one of W's, or from another type without narrowing (as W{a}).
template <class A, class W>
concept ArgumentFor = std::is_convertible_v<A, W> &&
    (!std::is_arithmetic_v<W> ||
     (std::is_arithmetic_v<std::remove_cvref_t<A>> ? holds_every_value<std::remove_cvref_t<A>, W>()
                                                   : requires(A && a) { W{std::forward<A>(a)}; }));

/// Encodes one argument of ProcessPool::call as its parameter's type W; a compile error
/// that names W and A when it may not be passed.
template <class W, class A>
void encode_argument(ByteWriter& w, A&& a) {
  static_assert(std::is_convertible_v<A, W>,
                "ProcessPool::call: an argument does not convert to its parameter's type (the parameter's "
                "type is W, the argument's A, in the instantiation above)");
  static_assert(!std::is_convertible_v<A, W> || ArgumentFor<A, W>,
                "ProcessPool::call: an argument would lose value: its type has values its parameter's arithmetic "
                "type has not (W, from A, in the instantiation above); convert it explicitly");
  if constexpr (ArgumentFor<A, W> && Serialisable<W>) {
    const W& v = std::forward<A>(a);  // the implicit conversion a call of the function would make
    Codec<W>::encode(w, v);
  }
}

/// Decodes a call's result; std::runtime_error naming the function if it does not.
template <class T>
T decode_result(const std::string& name, const std::string& reply) {
  if constexpr (std::is_void_v<T>) {
    return;
  } else if constexpr (Serialisable<T>) {
    try {
      ByteReader r(reply.data(), reply.size());
      T v = Codec<T>::decode(r);
      if (r.remaining() != 0) throw std::runtime_error("trailing bytes");
      return v;
    } catch (const std::exception& e) {
      throw std::runtime_error("ProcessPool: cannot decode the result of '" + name + "': " + e.what());
    }
  } else {
    // Never reached: a handle whose result cannot cross does not compile.
    throw std::logic_error("ProcessPool: the result of '" + name + "' cannot be decoded");
  }
}

template <class T>
inline constexpr bool is_process_function = false;
template <class Sig>
inline constexpr bool is_process_function<ProcessFunction<Sig>> = true;

/// The checks a process function's parameter and result types go through, each a
/// compile error that says what is wrong (the type is T in the instantiation it names).
template <class T>
struct CheckWireType {
  static_assert(!std::is_pointer_v<T>,
                "spindle::process_function: a parameter or the result is a pointer, and an address means "
                "nothing in the worker process: pass the value (std::string for a string, std::vector for an array)");
  static_assert(std::is_pointer_v<T> || Serialisable<T>,
                "spindle::process_function: a parameter or the result cannot cross to the worker process: "
                "spindle::Codec<T> handles trivially copyable types, std::string, std::vector, std::pair and "
                "std::tuple of those; specialise spindle::Codec<T> for the others");
  static constexpr bool ok = Serialisable<T>;
};
template <>
struct CheckWireType<void> {
  static constexpr bool ok = true;
};

/// A function type without its noexcept: the signature a handle carries.
template <class Sig>
struct PlainSignature;
template <class R, class... P>
struct PlainSignature<R(P...)> {
  using type = R(P...);
};
template <class R, class... P>
struct PlainSignature<R(P...) noexcept> {
  using type = R(P...);
};

/// Only process_function() makes a ProcessFunction.
struct ProcessFunctionKey {
  explicit ProcessFunctionKey() = default;
};

template <class R, class... P>
void register_process_function(const std::string& name, R (*fn)(P...)) {
  register_process_invoker(name, signature_of<std::decay_t<P>...>(), reinterpret_cast<void (*)()>(fn),
                           [fn](ByteReader& in, ByteWriter& out) {
                             auto args = decode_arguments<std::decay_t<P>...>(in);
                             if constexpr (std::is_void_v<R>) {
                               std::apply(fn, std::move(args));
                             } else {
                               Codec<std::decay_t<R>>::encode(out, std::apply(fn, std::move(args)));
                             }
                           });
}
}  // namespace detail

/// A function registered for ProcessPool::call, with its signature: a call through it is
/// checked against the parameters and typed by the result at compile time. Made by
/// process_function(); a copy names the same function. Any thread.
template <class R, class... P>
class ProcessFunction<R(P...)> {
 public:
  /// What ProcessPool::call returns: R without reference or const.
  using result_type = std::decay_t<R>;
  /// Whether every parameter (after decay) and the result can cross to a worker process;
  /// when one cannot, the type does not compile (detail::CheckWireType says why).
  static constexpr bool valid =
      (detail::CheckWireType<std::decay_t<P>>::ok && ... && detail::CheckWireType<result_type>::ok);

  ProcessFunction(detail::ProcessFunctionKey, std::string name) : name_(std::move(name)) {}
  /// The name it is registered under, which the worker looks it up by.
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
};

/// Registers fn under `name` for ProcessPool::call and returns the handle that calls go
/// through, e.g. at namespace scope (`inline` in a header, so that it is one object):
///   inline const auto square = spindle::process_function<int(int)>("square", &square_impl);
///   int v = pool.call(square, 7);
/// The signature may be left to fn (process_function("square", &square_impl)); when it is
/// given, fn may be anything that converts to a pointer to it, a lambda without captures
/// included. Every parameter (after decay) and the result must be Serialisable, and none
/// may be a pointer: otherwise the handle does not compile, and the error says which rule
/// a type broke.
/// Register before serve_process_worker() and before any pool starts: the workers are the
/// same program started again, and must register the same names as the caller. Not
/// thread-safe: from static initialisers or the start of main.
/// Throws std::invalid_argument for an empty name, or one registered already for another
/// function or signature (the same function registered again under its name is not an
/// error: a handle defined in a header without `inline` registers once per file).
template <class Sig>
requires std::is_function_v<Sig>
auto process_function(std::string name, Sig* fn) {
  using Plain = typename detail::PlainSignature<Sig>::type;
  if constexpr (ProcessFunction<Plain>::valid) detail::register_process_function(name, static_cast<Plain*>(fn));
  return ProcessFunction<Plain>(detail::ProcessFunctionKey{}, std::move(name));
}

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

  /// Runs fn in a worker with args and returns its result. A fibre suspends (its loop goes
  /// on); a foreign thread blocks. Typed as a call of the function itself: one argument
  /// per parameter, each converting implicitly to the parameter's type (after decay), and
  /// to an arithmetic type only from a type whose every value it holds (a string literal
  /// for a std::string, an int for a long or a double; not a double for an int, nor a long
  /// for an int); a call that breaks a rule does not compile, and the error says which.
  /// Throws ProcessError if fn threw, BrokenProcessPool if its worker died, TimeoutError
  /// at the timeout, BrokenExecutor after shutdown, CancelledError if the caller is
  /// cancelled (the call is abandoned; it completes in its worker, and the pool stays
  /// healthy), std::system_error if a worker cannot be started. When the workers are
  /// another program (ProcessPoolOptions::executable) that registered the name otherwise:
  /// std::invalid_argument if it has no function by that name or its parameters differ
  /// (the message names both signatures; the worker stays), std::runtime_error naming the
  /// function if the result does not decode.
  template <class R, class... P, class... A>
  typename ProcessFunction<R(P...)>::result_type call(const ProcessFunction<R(P...)>& fn, A&&... args) {
    static_assert(sizeof...(A) == sizeof...(P),
                  "ProcessPool::call: the number of arguments is not the function's number of parameters "
                  "(both are in the instantiation above)");
    ByteWriter w;
    if constexpr (sizeof...(A) == sizeof...(P))
      (detail::encode_argument<std::decay_t<P>>(w, std::forward<A>(args)), ...);
    const std::string reply = roundtrip(fn.name(), detail::signature_of<std::decay_t<P>...>(), std::move(w.bytes()));
    return detail::decode_result<typename ProcessFunction<R(P...)>::result_type>(fn.name(), reply);
  }
  /// Not a ProcessFunction: functions are called through the handle process_function()
  /// returned, not by name.
  template <class F, class... A>
  requires(!detail::is_process_function<F>) void call(const F&, A&&...) {
    static_assert(detail::is_process_function<F>,
                  "ProcessPool::call takes the handle spindle::process_function() returned, not a name: "
                  "inline const auto f = spindle::process_function<R(P...)>(\"f\", &f_impl); pool.call(f, args...)");
  }

  /// Stops taking calls (later calls throw BrokenExecutor). With wait, waits for the
  /// calls in flight, then ends every worker (closes its socket, reaps it). Idempotent.
  void shutdown(bool wait = true);
  /// Worker processes alive now.
  std::size_t processes() const;
  unsigned workers() const noexcept;

 private:
  /// Sends one call (its name, its arguments' type tags and bytes) to a worker from a call
  /// thread and returns the reply's bytes.
  std::string roundtrip(const std::string& name, std::string signature, std::string request);

  std::shared_ptr<detail::ProcessPoolState> st_;
  std::unique_ptr<ThreadPool> calls_;  // one thread per worker process in use
};

}  // namespace spindle
