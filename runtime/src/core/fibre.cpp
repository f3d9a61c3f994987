#include "core/fibre.hpp"

#include <spindle/task.hpp>

#include <memory>
#include <thread>

#include "core/frame.hpp"
#include "sched/runtime_impl.hpp"
#include "core/sanitizer.hpp"
#include "core/task_state.hpp"
#include "observe/trace_hooks.hpp"
#include "sched/worker.hpp"

// The C++ runtime keeps, per thread, the chain of exceptions being handled and the
// count of exceptions in flight (std::uncaught_exceptions). A fibre that suspends in a
// catch block or while unwinding must take those with it: another fibre may throw on
// this thread meanwhile, and this fibre may resume on another thread. So each switch out
// saves them in the frame and leaves the thread's empty; each switch in restores them.
// The layout is the Itanium C++ ABI's __cxa_eh_globals (libstdc++ and libc++ alike).
namespace __cxxabiv1 {
struct __cxa_eh_globals;
extern "C" __cxa_eh_globals* __cxa_get_globals() noexcept;
}  // namespace __cxxabiv1

namespace spindle::detail {

namespace {
struct EhGlobals {
  void* caught_exceptions;
  unsigned int uncaught_exceptions;
};
// cxxabi.h declares __cxa_get_globals __attribute__((const)), so the compiler may reuse
// its result across a switch — and write the old thread's globals from the new thread.
// This out-of-line wrapper, with its compiler barrier, is called afresh every time.
__attribute__((noinline)) EhGlobals* eh_globals() noexcept {
  asm volatile("" ::: "memory");
  return reinterpret_cast<EhGlobals*>(__cxxabiv1::__cxa_get_globals());
}

// Boost.Context stack allocator over one stack taken from the pool beforehand.
struct PoolStack {
  Stack stack;
  StackPool* pool;
  boost::context::stack_context allocate() noexcept {
    boost::context::stack_context sc;
    sc.sp = stack.top();
    sc.size = stack.usable();  // the guard region is not
    return sc;
  }
  // Called on the thread that ran the fibre's last step, after it switched away.
  void deallocate(boost::context::stack_context&) noexcept {
    Worker* w = current_worker();
    if (w && &w->stacks.pool() == pool) {
      w->stacks.give(stack);
    } else if (pool->is_default(stack)) {
      pool->give_shared(&stack, 1);
    } else {
      pool->give_custom(stack);
    }
  }
};

boost::context::fiber fibre_main(TaskHeader* t, Stack s, void* tsan_fiber, boost::context::fiber&& back) {
  TaskFrame frame;
  // A fibre is always started by its worker's loop: the stack we come from is the
  // worker thread's own, which ASan needs for every later switch back.
  Worker* const starter = current_worker();  // valid until the body first suspends
  san::finish_switch(nullptr, &starter->stack_bottom, &starter->stack_size);
  starter->loop_ctx = std::move(back);  // held while any fibre runs on this loop
  frame.task = t;
  frame.rt = starter->rt;
  frame.stack = s;
  frame.tsan_fiber = tsan_fiber;
  frame.started_ns = starter->clock_ns;
  t->lock();
  t->frame = &frame;
  t->unlock();
  Status st = Status::result;
  std::exception_ptr error;
  std::string cancel_msg;
  try {
    // Listed from its first step on (all_tasks, dumps, shutdown). A task registering after
    // shutdown took its snapshot would be missed by its cancellation: it cancels itself
    // instead, raised at its first suspension. seq_cst: pairs with shutdown's store of
    // `closing` before its snapshot (and the shard's lock is a full barrier).
    starter->registry.add(&frame);  // std::bad_alloc: the task fails with it, unlisted
    if (starter->rt->closing.load(std::memory_order_seq_cst) && !(t->word.load(std::memory_order_relaxed) & kLateSpawn))
      t->word.fetch_or(kCancelReq, std::memory_order_acq_rel);
    t->ops->run(t);
  } catch (const boost::context::detail::forced_unwind&) {
    throw;  // Boost unwinding a fibre it destroys: must pass through
  } catch (const CancelledError& e) {
    st = Status::cancelled;
    cancel_msg = e.message();
  } catch (...) {
    st = Status::exception;
    error = std::current_exception();
  }

  if (frame.shard) frame.shard->remove(&frame);
  drop_wait_timer(&frame);
  t->lock();
  t->frame = nullptr;
  if (st == Status::exception) {
    Extra& x = t->extra_locked();
    x.error = std::move(error);
    x.sink = frame.rt->sink;
  } else if (st == Status::cancelled && !cancel_msg.empty()) {
    t->extra_locked().cancel_message = std::move(cancel_msg);
  }
  // Clear a cancellation that arrived too late to be raised; it no longer applies.
  t->word.fetch_and(uint16_t(~kCancelReq), std::memory_order_relaxed);
  t->publish_and_unlock(st);

  Worker* w = current_worker();
  if (st == Status::cancelled)
    Worker::count(w->cancelled);
  else if (st == Status::exception)
    Worker::count(w->failed);
  w->tsan_to_destroy = frame.tsan_fiber;
  san::start_switch(nullptr, w->stack_bottom, w->stack_size);
  san::tsan_switch_to(w->tsan_fiber);
  return std::move(w->loop_ctx);
}

}  // namespace

void* thread_eh_globals() noexcept { return eh_globals(); }

ThreadEh take_thread_eh() noexcept {
  EhGlobals* g = eh_globals();
  const ThreadEh e{g->caught_exceptions, g->uncaught_exceptions};
  *g = EhGlobals{nullptr, 0};
  return e;
}

void put_thread_eh(const ThreadEh& e) noexcept { *eh_globals() = EhGlobals{e.caught, e.uncaught}; }

boost::context::fiber make_fibre(TaskHeader* t, const Stack& s, StackPool* pool, void* tsan_fiber) {
  return boost::context::fiber(
      std::allocator_arg, PoolStack{s, pool},
      [t, s, tsan_fiber](boost::context::fiber&& back) { return fibre_main(t, s, tsan_fiber, std::move(back)); });
}

namespace {
// The switch out of a suspending fibre, in three parts, each inline: straight into the
// next ready fibre (switch_direct) or back to the loop (switch_to_loop), then, once
// resumed, taking what the resumer handed over (resumed). `t` is the suspending task,
// running on worker `w` (its `current`), `f` its frame.
// Yield: t yielded (and shutdown has not abandoned it): it is requeued as it is, its
// state untouched (task_state.hpp, "a yield"); otherwise it is published as suspended.

// Direct switch: run `next` (RUNNING already, its context in its frame) without a round
// trip through the worker's own context (which stays in w->loop_ctx). We are still on
// our stack, so we must not be published yet: the on-top function below runs on `next`'s
// stack once we are fully saved, and only then stores our context and publishes us
// (invariant 1: suspend, then publish; a thief can take us from the run queue only after
// that push). It runs on this thread, on w: it reads w in place (tls_worker, one load:
// no switch follows in it) and is handed t alone (a capture of both was packed into a
// vector register, stored, and read back as two words, which measured about 5% slower
// per yield). It returns an empty fiber: `next` then knows that a fibre resumed it, not
// the loop. (A plain resume, with `next` publishing us once its own switch returned, ran
// as many instructions but measured about twice as slow: most likely because
// jump_fcontext leaves by a jump, so the return predictor stays one entry off after the
// switch, where the on-top function's own return consumes it.) `hooks`: step_hooks, read
// once by the caller. Publish: how t is published (below).
template <class Publish>
inline boost::context::fiber switch_direct(Worker* w, TaskHeader* t, TaskFrame* f, TaskHeader* next,
                                           uint8_t hooks) noexcept {
  TaskFrame* nf = next->frame;
  w->step_switch(t, next, hooks);
  boost::context::fiber target = std::move(nf->ctx);
#if defined(SPINDLE_ASAN)
  san::start_switch(&f->asan_fake, nf->stack.guard_end(), nf->stack.usable());
#else
  (void)f;
#endif
  san::tsan_switch_to(nf->tsan_fiber);
  return std::move(target).resume_with([t](boost::context::fiber&& from) {
    // Our frame's ctx is empty while we run: the saved context is constructed in its
    // place (a move-assignment would first test it for an old context to unwind).
    new (&t->frame->ctx) boost::context::fiber(std::move(from));
    Publish::publish(tls_worker, t);  // the worker that switched (see above)
    return boost::context::fiber{};
  });
}

// How switch_direct's on-top function publishes the fibre it switched away from.
struct PublishSuspended {  // a wait (or an abandoned task's yield): IDLE, or requeued if woken
  static void publish(Worker* w, TaskHeader* t) noexcept { w->after_suspend(t); }
};
struct PublishYielded {  // a yield: requeued as it is
  static void publish(Worker* w, TaskHeader* t) noexcept { w->requeue_yielded(t); }
};
struct PublishYieldedUnpinned {  // yield's fast path: requeued on the run queue
  static void publish(Worker* w, TaskHeader* t) noexcept { w->requeue_unpinned(t); }
};
template <bool Yield>
using PublishFor = std::conditional_t<Yield, PublishYielded, PublishSuspended>;

// No started task to switch to: back to the worker's loop, which publishes us
// (after_suspend) once the switch is done, and then runs what it picks (`pending` first).
template <bool Yield>
inline boost::context::fiber switch_to_loop(Worker* w, TaskFrame* f) noexcept {
  if constexpr (Yield) w->yielding = true;  // the loop requeues us (after_suspend)
  san::start_switch(&f->asan_fake, w->stack_bottom, w->stack_size);
  san::tsan_switch_to(w->tsan_fiber);
  return std::move(w->loop_ctx).resume();
}

// t runs again, maybe on another thread: the worker we left is stale. The loop that
// resumed us handed us its own context; a fibre that switched to us directly handed us
// nothing (its loop's context is in place already). Exception globals we held go back
// into this thread's.
inline void take_handover(TaskFrame* f, boost::context::fiber&& back) noexcept {
  Worker* now = current_worker();
  if (back) now->loop_ctx = std::move(back);
  if (f->eh_held) {  // this thread's, maybe not the one we left
    *static_cast<EhGlobals*>(now->eh_globals) = EhGlobals{f->eh_caught, f->eh_uncaught};
    f->eh_held = false;
  }
}
// The same out of line, for a yield's fast path: it then keeps only t across its switch.
// (A wait, which its loop resumes as often as not, keeps it inline.)
__attribute__((noinline)) void take_handover_outlined(TaskFrame* f, boost::context::fiber&& back) noexcept {
  take_handover(f, std::move(back));
}
template <bool Outlined>
inline void resumed(TaskHeader* t, boost::context::fiber&& back) noexcept {
  TaskFrame* f = t->frame;  // (the same frame: reloaded rather than kept in a register across the switch)
  if (back || f->eh_held) [[unlikely]] {
    if constexpr (Outlined)
      take_handover_outlined(f, std::move(back));
    else
      take_handover(f, std::move(back));
  }
  san::finish_switch(f->asan_fake, nullptr, nullptr);
}

// The switch out of t, to `next` (what this loop's turn took from its queues; null:
// nothing, or the loop's own turn) and back: directly if next has a fibre, else through
// the loop (which starts next first: `pending`). Outlined: see resumed.
template <class Publish, bool Yield, bool Outlined = false>
inline void switch_out(Worker* w, TaskHeader* t, TaskFrame* f, TaskHeader* next, uint8_t hooks) noexcept {
  if (next && task_state::run_if_started(next)) [[likely]] {  // RUNNING now, as in run_task
    resumed<Outlined>(t, switch_direct<Publish>(w, t, f, next, hooks));
  } else {
    if (next) w->pending = next;  // it needs a new fibre: the loop starts it next
    resumed<Outlined>(t, switch_to_loop<Yield>(w, f));
  }
}

// The thread's exception globals are empty (the common case: see suspend_on). One test
// for both fields.
inline bool eh_empty(Worker* w) noexcept {
  const auto* g = static_cast<const EhGlobals*>(w->eh_globals);
  return (reinterpret_cast<uintptr_t>(g->caught_exceptions) | g->uncaught_exceptions) == 0;
}

// suspend_current's body, and yield's general path: the switch out, once `hooks`
// (w->step_hooks as note_suspension read it) has been dealt with.
template <bool Yield>
inline void suspend_on(Worker* w, TaskHeader* t, TaskFrame* f, uint8_t hooks) noexcept {
  // The C++ exception globals (see the top of this file). The thread's live at a fixed
  // address per thread: each worker looked it up once (a __tls_get_addr call into
  // libstdc++ otherwise). Whoever switches into a fibre has left them empty (every
  // switch out of a fibre empties them, and a loop never switches from inside a
  // handler), so a fibre that suspends with them empty, the common case, has nothing to
  // keep or put back.
  if (!eh_empty(w)) [[unlikely]] {
    auto* g = static_cast<EhGlobals*>(w->eh_globals);
    f->eh_caught = g->caught_exceptions;
    f->eh_uncaught = g->uncaught_exceptions;
    f->eh_held = true;
    *g = EhGlobals{nullptr, 0};
  }
  switch_out<PublishFor<Yield>, Yield>(w, t, f, w->next_for_direct_switch(), hooks);
}

// Notes where t suspends (Task::where(), and the trace when it records). Returns the
// step hooks (Worker::step_hooks), read once for the whole switch.
inline uint8_t note_suspension(Worker* w, TaskFrame* f, std::source_location where, SuspendKind kind) noexcept {
  const uint8_t hooks = w->step_hooks.load(std::memory_order_relaxed);  // relaxed: see worker.hpp
  if (hooks) [[unlikely]]
    if (w->tracing()) trace_suspend(w, where, kind);
  f->where.store(where, std::memory_order_relaxed);  // relaxed: a diagnostic (frame.hpp)
  return hooks;
}
}  // namespace

void suspend_current(std::source_location where, SuspendKind kind) noexcept {
  Worker* w = current_worker();
  TaskHeader* t = w->current.load(std::memory_order_relaxed);
  TaskFrame* f = t->frame;
  suspend_on<false>(w, t, f, note_suspension(w, f, where, kind));
}

}  // namespace spindle::detail

namespace spindle {

namespace {
// yield() for every case its fast path leaves out (below): outside a task, a cancellation
// to raise, a task that shutdown abandoned, a pinned one, step hooks on, exception
// globals to keep.
__attribute__((noinline)) void yield_general(std::source_location where) {
  using namespace detail;
  // One lookup of the worker for the whole step (we are on its thread until the switch).
  Worker* w = current_worker();
  TaskHeader* t = w ? w->current.load(std::memory_order_relaxed) : nullptr;
  if (!t) {
    std::this_thread::yield();
    return;
  }
  // cancel_pending() is called only when the bit is there (its other tests are off the
  // common path). acquire: as in cancel_pending, pairs with the canceller's RMW.
  const uint16_t word = t->word.load(std::memory_order_acquire);
  if ((word & kCancelReq) && cancel_pending(t)) throw take_cancel(t);
  // The worker requeues us at the back of its queue once we have switched out. Not a
  // task that shutdown abandoned: requeued, it would keep its worker busy for ever (the
  // worker only stops when it runs dry); it suspends instead. The bit is set by shutdown
  // before it stops the workers, and only ever set.
  TaskFrame* f = t->frame;
  const uint8_t hooks = note_suspension(w, f, where, SuspendKind::yield);
  if (!(word & kAbandoned)) [[likely]]
    suspend_on<true>(w, t, f, hooks);
  else
    suspend_on<false>(w, t, f, hooks);
  // `w` is stale now (we may be on another thread); t is still ours.
  if ((t->word.load(std::memory_order_acquire) & kCancelReq) && cancel_pending(t)) throw take_cancel(t);
}

// The loop's turn for yield's fast path when it is not the common one (next_task_general:
// the global queue and the reactor, timers, the LIFO slot, pinned work, ...), as
// next_for_direct_switch takes it. Out of line: the fast path then keeps few registers.
// It only picks: the switch stays in the fast path, so that every yield switches from
// the same call site (a fibre resumes where another suspended, and a return predictor
// that saw another call site mispredicts both returns: with the general turn's own
// switch, 1 yield in 13, that measured about a tenth of a yield's time, more than the
// whole general turn).
__attribute__((noinline)) detail::TaskHeader* general_turn(detail::Worker* w) noexcept {
  detail::TaskHeader* const next = w->next_task_general();
  if (!next) detail::Worker::count(w->empty_turns);
  return next;
}
}  // namespace

// Here rather than beside the other task functions (task.cpp) so that the suspension
// is inlined into it: a yield is the hottest suspension there is.
void yield(std::source_location where) {
  using namespace detail;
  // The fast path: a task of a loop, not pinned, with no step hooks on, no cancellation
  // pending and no exception globals to keep. It does what yield_general does in that
  // case, and tests everything it leaves out before it changes anything, so every other
  // case is a tail call to yield_general, which starts afresh. Only `t` lives across the
  // switch, so the function saves two registers of its own (the switch saves the rest).
  // The worker is read in place (tls_worker): this is the only thread-local read before
  // the switch, and none follows it here.
  Worker* const w = tls_worker;
  TaskHeader* t;
  if (!w || !(t = w->current.load(std::memory_order_relaxed))) [[unlikely]]
    return yield_general(where);
  // acquire: as in yield_general. A pinned task is requeued on its pinned queue, not the
  // run queue; an abandoned one suspends (both in yield_general).
  const uint16_t word = t->word.load(std::memory_order_acquire);
  // relaxed step_hooks: see worker.hpp.
  if ((word & (kCancelReq | kAbandoned | kPinned)) || w->step_hooks.load(std::memory_order_relaxed) || !eh_empty(w))
      [[unlikely]]
    return yield_general(where);
  TaskFrame* const f = t->frame;
  f->where.store(where, std::memory_order_relaxed);  // relaxed: a diagnostic (frame.hpp)
  // The loop's turn, as next_for_direct_switch takes it (its `pending` is empty while a
  // fibre runs, and `stopping` is a hint there: a loop stops only once it finds nothing
  // to run).
  TaskHeader* next = w->next_task_common();
  if (!next) [[unlikely]]
    next = general_turn(w);
  switch_out<PublishYieldedUnpinned, true, true>(w, t, f, next, 0);
  // `w` is stale now (we may be on another thread); t is still ours.
  if ((t->word.load(std::memory_order_acquire) & kCancelReq) && cancel_pending(t)) [[unlikely]]
    throw take_cancel(t);
}

}  // namespace spindle
