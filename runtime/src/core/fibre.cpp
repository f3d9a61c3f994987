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

boost::context::fiber make_fibre(TaskHeader* t, const Stack& s, StackPool* pool, void* tsan_fiber) {
  return boost::context::fiber(
      std::allocator_arg, PoolStack{s, pool},
      [t, s, tsan_fiber](boost::context::fiber&& back) { return fibre_main(t, s, tsan_fiber, std::move(back)); });
}

namespace {
// suspend_current's body, for the worker `w` the calling fibre runs on now. `t` is
// w->current, `f` its frame; `hooks` is w->step_hooks as note_suspension read it.
// Yield: t yielded (and shutdown has not abandoned it): it is requeued as it is, its
// state untouched (task_state.hpp, "a yield"); otherwise it is published as suspended.
template <bool Yield>
inline void suspend_on(Worker* w, TaskHeader* t, TaskFrame* f, uint8_t hooks) noexcept {
  // The C++ exception globals (see the top of this file). The thread's live at a fixed
  // address per thread: each worker looked it up once (a __tls_get_addr call into
  // libstdc++ otherwise). Whoever switches into a fibre has left them empty (every
  // switch out of a fibre empties them, and a loop never switches from inside a
  // handler), so a fibre that suspends with them empty, the common case, has nothing to
  // keep or put back.
  auto* g = static_cast<EhGlobals*>(w->eh_globals);
  if (g->caught_exceptions || g->uncaught_exceptions) [[unlikely]] {
    f->eh_caught = g->caught_exceptions;
    f->eh_uncaught = g->uncaught_exceptions;
    f->eh_held = true;
    *g = EhGlobals{nullptr, 0};
  }
  boost::context::fiber back;
  if (TaskHeader* next = w->next_for_direct_switch()) [[likely]] {
    // Direct switch: run the next ready fibre without a round trip through the worker's
    // own context (which stays in w->loop_ctx). We are still on our stack, so we must
    // not be published yet: the on-top function below runs on `next`'s stack once we
    // are fully saved, and only then stores our context and publishes us (invariant 1:
    // suspend, then publish; a thief can take us from the run queue only after that
    // push). It runs on this thread, so it is handed `w` and `t` (no thread-local
    // lookup), and returns an empty fiber: `next` then knows that a fibre resumed it,
    // not the loop. (A plain resume, with `next` publishing us once its own switch
    // returned, ran as many instructions but measured about twice as slow: most likely
    // because jump_fcontext leaves by a jump, so the return predictor stays one entry
    // off after the switch, where the on-top function's own return consumes it.)
    TaskFrame* nf = next->frame;
    w->step_switch(t, next, hooks);
    boost::context::fiber target = std::move(nf->ctx);
#if defined(SPINDLE_ASAN)
    san::start_switch(&f->asan_fake, nf->stack.guard_end(), nf->stack.usable());
#endif
    san::tsan_switch_to(nf->tsan_fiber);
    back = std::move(target).resume_with([w, t](boost::context::fiber&& from) {
      t->frame->ctx = std::move(from);
      if constexpr (Yield)
        w->requeue_yielded(t);
      else
        w->after_suspend(t);
      return boost::context::fiber{};
    });
  } else {
    if constexpr (Yield) w->yielding = true;  // the loop requeues us (after_suspend)
    san::start_switch(&f->asan_fake, w->stack_bottom, w->stack_size);
    san::tsan_switch_to(w->tsan_fiber);
    back = std::move(w->loop_ctx).resume();
  }
  // We may be on another thread now: `w` is stale. The loop that resumed us handed us
  // its own context; a fibre that switched to us directly handed us nothing (its
  // loop's context is in place already).
  f = t->frame;  // (the same frame: reloaded rather than kept in a register across the switch)
  if (back || f->eh_held) [[unlikely]] {
    Worker* now = current_worker();
    if (back) now->loop_ctx = std::move(back);
    if (f->eh_held) {  // this thread's, maybe not the one we left
      *static_cast<EhGlobals*>(now->eh_globals) = EhGlobals{f->eh_caught, f->eh_uncaught};
      f->eh_held = false;
    }
  }
  san::finish_switch(f->asan_fake, nullptr, nullptr);
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

// Here rather than beside the other task functions (task.cpp) so that the suspension
// is inlined into it: a yield is the hottest suspension there is.
void yield(std::source_location where) {
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

}  // namespace spindle
