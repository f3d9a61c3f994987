// spindle::Generator<T, In>: a generator backed by a fibre (asyncio's async generators,
// with asend): the body yields values to its consumer and, when In is not void,
// receives a value from the consumer on each resume.
//
//   Generator<int> count([](auto& co) { for (int i = 0; i < 3; ++i) co.yield(i); });
//   for (int v : count) ...;                      // 0, 1, 2
//
//   Generator<int, int> acc([](auto& co) {        // a running total of what is sent
//     int sum = 0;
//     for (;;) sum += co.yield(sum);
//   });
//   acc.next();      // starts it: 0
//   acc.send(5);     // 5
//   acc.send(2);     // 7
//
// The body runs in a task of its own (so it may suspend anywhere: sleep, get, I/O),
// started lazily by the first next(), and strictly alternates with its consumer: it
// runs only while the consumer waits in next()/send(). Destroying the generator (or
// close()) while the body is suspended in yield() raises GeneratorExit there, so the
// body's stack unwinds and its destructors run, and waits for the body to end.
//
// Cancelling a consumer that waits in next()/send() cancels the body's task (asyncio
// raises the CancelledError in the body) and the consumer waits until the body yields
// or ends. A body that catches it and yields hands that value to the consumer, whose
// own cancellation stays pending; so neither side ever waits for the other for ever.
// One consumer at a time: a second concurrent next()/send()/close() gets
// InvalidStateError ("already running").
//
// Design note: the body is a task plus a two-way hand-off, not a raw Boost.Context fibre
// the consumer switches into. Measured on the 2-core dev machine: ~160-210 ns per value
// this way (two scheduler switches and two wake-ups), ~13 ns with a raw switch. But with
// a raw fibre the body would suspend inside the runtime (sleep, get, I/O) on the
// consumer task's behalf, on a stack the runtime does not know: the worker would resume
// the task with the task's stack bounds and TSan fibre while the generator's stack is
// the live one, and every direct switch would have to carry the C++ exception globals
// (runtime/src/fibre.cpp does all this per switch for task fibres only). A task needs
// none of it, may run on another worker, and is cancelled and shut down like any task.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <concepts>
#include <functional>
#include <iterator>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>
#include <variant>

#include <spindle/detail/waiting_core.hpp>
#include <spindle/errors.hpp>
#include <spindle/options.hpp>
#include <spindle/task.hpp>

namespace spindle {

class Runtime;

/// Raised inside a generator's body, at its yield(), when the generator is closed or
/// destroyed early (Python's GeneratorExit). Like CancelledError it does not derive from
/// std::exception, so a generic catch does not swallow it; a body that catches it should
/// rethrow it or return (yielding again just raises it again).
class GeneratorExit {
 public:
  const char* what() const noexcept { return "generator closed"; }
};

template <class T, class In>
class Yield;

namespace detail {

/// The hand-off between a generator's consumer and its body (generator.cpp).
class GenCore {
 public:
  explicit GenCore(RuntimeImpl* rt);
  virtual ~GenCore();
  GenCore(const GenCore&) = delete;
  GenCore& operator=(const GenCore&) = delete;
  void ref() noexcept;
  void unref() noexcept;

  // Consumer side. One consumer at a time: enter() claims the generator for a call of
  // next()/send() (throws InvalidStateError if another call is inside one: asyncio's
  // "asynchronous generator is already running"), leave() ends the claim. The value
  // slots of GenState are touched by a consumer only while it holds the claim.
  void enter();
  void leave() noexcept;
  // With the claim held: starts the body or resumes it from its yield, and waits until
  // it yields again (true: a value is in the slot) or ends (false; its exception is
  // rethrown once). See Generator::next for what a cancellation of the consumer does.
  bool resume(std::source_location where);
  // Claims the generator itself (a second caller: InvalidStateError when `rethrow`,
  // else it returns at once). See Generator::close.
  void close(bool rethrow, std::source_location where);
  bool started() noexcept;
  bool finished() noexcept;

  // Body side: the value is in the slot; hands it over and waits to be resumed. Throws
  // GeneratorExit when closed, CancelledError when the body's task is cancelled.
  void yield_point(std::source_location where);

 protected:
  /// Makes (does not submit) the task that runs the body: new_task's handle, the
  /// scheduler's reference still to hand over.
  virtual Task<> make_body_task() = 0;

 private:
  enum class Phase : uint8_t { unstarted, running, suspended, finished };
  // Fires when the body's task ends (however it ends, even never started).
  struct EndNode final : DoneNode {
    GenCore* owner = nullptr;
    void fire() noexcept override;
  };
  void on_end() noexcept;
  void start();
  // With lock_ held: parks the consumer until the phase is no longer `running` (the
  // body yielded or ended). On a cancellation of the consumer (when cancellable) it
  // passes the cancellation on to the body's task and goes on waiting, uncancellably,
  // for the same thing; returns true then.
  bool consumer_wait_locked(bool cancellable, std::source_location where);

  RuntimeImpl* const rt_;
  std::atomic<uint32_t> refs_{1};
  SpinLock lock_;
  Phase phase_ = Phase::unstarted;  // guarded by lock_, as are the fields below
  bool closing_ = false;            // GeneratorExit requested
  bool consumer_inside_ = false;    // a consumer holds the claim (enter()..leave())
  bool outcome_taken_ = false;      // the body's exception was rethrown once
  Waiter* consumer_ = nullptr;      // parked in resume()/close()
  Waiter* producer_ = nullptr;      // parked in yield_point()
  bool uncollected_ = false;        // the body yielded a value the consumer has not taken yet
  Waiter* collect_ = nullptr;       // the body, cancelled in yield(), waits for that take
  Task<> task_;                     // the body's task, once started
  EndNode end_;
};

template <class T, class In>
struct GenState : GenCore {
  using GenCore::GenCore;
  std::optional<T> out;  // the value yielded, until the consumer takes it
  std::conditional_t<std::is_void_v<In>, std::monostate, std::optional<In>> in;  // the value sent
};

template <class T, class In, class F>
struct GenBody final : GenState<T, In> {
  GenBody(RuntimeImpl* rt, F&& f) : GenState<T, In>(rt), body(std::move(f)) {}
  F body;
  Task<> make_body_task() override {
    return new_task([this] {
      Yield<T, In> co(this);
      try {
        std::invoke(body, co);
      } catch (const GeneratorExit&) {
        // closed early: a normal end
      }
    });
  }
};

RuntimeImpl* generator_runtime(Runtime* rt);

// A consumer's claim on a generator for the length of one next()/send().
class GenClaim {
 public:
  explicit GenClaim(GenCore& g) : g_(g) { g_.enter(); }
  ~GenClaim() { g_.leave(); }
  GenClaim(const GenClaim&) = delete;
  GenClaim& operator=(const GenClaim&) = delete;

 private:
  GenCore& g_;
};
}  // namespace detail

/// What a generator's body receives: `co.yield(v)` hands v to the consumer and suspends
/// until the consumer asks for the next value; it returns the In the consumer sent
/// (with next(), a default-constructed In). Only the body's task may use it.
template <class T, class In = void>
class Yield {
 public:
  explicit Yield(detail::GenState<T, In>* st) noexcept : st_(st) {}
  Yield(const Yield&) = delete;
  Yield& operator=(const Yield&) = delete;

  /// Throws GeneratorExit if the generator is closed meanwhile, CancelledError if the
  /// body's task is cancelled (for instance by the runtime's shutdown). A consumer
  /// cancelled while waiting for this body cancels it too, wherever it is suspended;
  /// a body that catches that CancelledError and yields hands the value to that
  /// consumer (see Generator::next). A cancellation that reaches this yield() before
  /// the consumer took the value it hands over is raised once the consumer has it.
  auto yield(T value, std::source_location where = std::source_location::current()) {
    st_->out.emplace(std::move(value));
    st_->yield_point(where);
    if constexpr (!std::is_void_v<In>) {
      In v = std::move(*st_->in);
      st_->in.reset();
      return v;
    }
  }

 private:
  detail::GenState<T, In>* st_;
};

/// A generator of T that receives In on each resume (In = void: receives nothing).
/// Owned by one consumer at a time (a fibre of the runtime, or a foreign thread, which
/// then blocks in next()); movable, not copyable. A second task (or thread) calling
/// next()/send()/close() while a call is inside one gets InvalidStateError (asyncio's
/// "asynchronous generator is already running"); the first one is not disturbed.
template <class T, class In = void>
class Generator {
  static_assert(std::is_object_v<T> && !std::is_array_v<T>, "Generator<T>: T must be an object type");

 public:
  using value_type = T;

  /// A generator whose body runs on the calling task's runtime. body is called as
  /// body(Yield<T, In>&) in a task of its own, on the first next(). Throws RuntimeError
  /// outside a runtime.
  template <class F>
  requires std::is_invocable_v < std::decay_t<F>
  &, Yield<T, In>& > explicit Generator(F&& body)
      : st_(new detail::GenBody<T, In, std::decay_t<F>>(detail::generator_runtime(nullptr), std::forward<F>(body))) {}
  /// The same on `rt` (so that a foreign thread can consume it).
  template <class F>
  requires std::is_invocable_v < std::decay_t<F>
  &, Yield<T, In>& > Generator(Runtime& rt, F&& body)
      : st_(new detail::GenBody<T, In, std::decay_t<F>>(detail::generator_runtime(&rt), std::forward<F>(body))) {}

  Generator(Generator&& o) noexcept : st_(std::exchange(o.st_, nullptr)), cur_(std::move(o.cur_)) {}
  Generator& operator=(Generator&& o) noexcept {
    if (this != &o) {
      release();
      st_ = std::exchange(o.st_, nullptr);
      cur_ = std::move(o.cur_);
    }
    return *this;
  }
  /// Closes the generator (see close()) and waits for the body to end; an exception the
  /// body raises while closing is reported by the runtime as never retrieved.
  ~Generator() { release(); }

  /// Resumes the body (starting it the first time; with a non-void In it receives a
  /// default-constructed In) and returns the next value, or std::nullopt once the body
  /// has returned. Rethrows, once, an exception the body let escape. If the caller is
  /// cancelled while waiting, the cancellation is passed on to the body's task (as
  /// asyncio raises it in the body) and the caller waits until the body yields or ends:
  /// if the body ends cancelled, the caller gets CancelledError; if it catches the
  /// CancelledError and yields a value (or returns, or fails), next() returns that value
  /// (std::nullopt, rethrows) and the caller's own cancellation stays pending, raised at
  /// its next suspension point. So neither side waits for the other for ever. Throws
  /// InvalidStateError if another call is inside next()/send()/close() of this
  /// generator at the same time.
  std::optional<T> next(std::source_location where = std::source_location::current()) requires(
      std::is_void_v<In> || std::default_initializable<In>) {
    auto& s = state();
    detail::GenClaim claim(s);
    if constexpr (!std::is_void_v<In>) {
      if (s.started()) s.in.emplace();
    }
    return advance(s, where);
  }
  /// asend(v): resumes the body with v as the value of its pending yield(). Throws
  /// InvalidStateError on a generator that has not started (Python: "can't send
  /// non-None value to a just-started generator"; call next() first), and when another
  /// call is inside next()/send()/close() (v is then dropped). Cancellation as next().
  template <class V = In>
  requires(!std::is_void_v<V>) std::optional<T> send(V v,
                                                     std::source_location where = std::source_location::current()) {
    auto& s = state();
    detail::GenClaim claim(s);
    if (!s.started()) throw InvalidStateError("Generator::send: the generator has not started (call next() first)");
    s.in.emplace(std::move(v));
    return advance(s, where);
  }
  /// aclose(): raises GeneratorExit at the body's pending yield() and waits for the body
  /// to end (without a cancellation point). A body that has not started never runs.
  /// Rethrows an exception (other than GeneratorExit) the body raises while closing.
  /// Throws InvalidStateError if another call is inside next()/send() at the time.
  void close(std::source_location where = std::source_location::current()) { state().close(true, where); }
  /// True once the body has ended (or was closed before it started).
  bool done() const { return st_ && st_->finished(); }

  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;
    iterator() = default;
    T& operator*() const { return *g_->cur_; }
    T* operator->() const { return &*g_->cur_; }
    iterator& operator++() {
      g_->cur_ = g_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class Generator;
    bool at_end() const { return !g_->cur_; }
    explicit iterator(Generator* g) : g_(g) {}
    Generator* g_ = nullptr;
  };
  /// Range-for: fetches the first value (as next()).
  iterator begin() {
    cur_ = next();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  detail::GenState<T, In>& state() const {
    if (!st_) throw InvalidStateError("Generator: moved from");
    return *st_;
  }
  // With the claim held, so no other consumer touches the slots meanwhile.
  std::optional<T> advance(detail::GenState<T, In>& s, std::source_location where) {
    if (!s.resume(where)) return std::nullopt;
    std::optional<T> v(std::move(s.out));
    s.out.reset();
    return v;
  }
  void release() noexcept {
    if (!st_) return;
    st_->close(false, std::source_location::current());
    st_->unref();
    st_ = nullptr;
  }

  detail::GenState<T, In>* st_;
  std::optional<T> cur_;  // the value the range-for iterator is at
};

}  // namespace spindle
