#include "core/fibre.hpp"

#include <spindle/task.hpp>

#include <memory>
#include <thread>

#include "core/frame.hpp"
#include "sched/runtime_impl.hpp"
#include "core/sanitizer.hpp"
#include "core/task_state.hpp"
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

// Runs on the stack of the fibre we switched to directly, before it continues: the
// previous fibre is fully saved in `from` now, so it may be published.
boost::context::fiber publish_previous(boost::context::fiber&& from) {
  Worker* w = current_worker();
  TaskHeader* prev = std::exchange(w->switch_prev, nullptr);
  prev->frame->ctx = std::move(from);
  w->after_suspend(prev);
  return std::move(w->handoff_back);  // becomes the resumed fibre's `back`
}

boost::context::fiber fibre_main(TaskHeader* t, Stack s, void* tsan_fiber, boost::context::fiber&& back) {
  TaskFrame frame;
  // A fibre is always started by its worker's loop: the stack we come from is the
  // worker thread's own, which ASan needs for every later switch back.
  san::finish_switch(nullptr, &frame.back_bottom, &frame.back_size);
  Worker* const starter = current_worker();  // valid until the body first suspends
  starter->stack_bottom = frame.back_bottom;
  starter->stack_size = frame.back_size;
  frame.back = std::move(back);
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
  san::start_switch(nullptr, frame.back_bottom, frame.back_size);
  san::tsan_switch_to(w->tsan_fiber);
  return std::move(frame.back);
}

}  // namespace

void* thread_eh_globals() noexcept { return eh_globals(); }

boost::context::fiber make_fibre(TaskHeader* t, const Stack& s, StackPool* pool, void* tsan_fiber) {
  return boost::context::fiber(
      std::allocator_arg, PoolStack{s, pool},
      [t, s, tsan_fiber](boost::context::fiber&& back) { return fibre_main(t, s, tsan_fiber, std::move(back)); });
}

namespace {
// suspend_current's body, for the worker `w` the calling fibre runs on now.
inline void suspend_on(Worker* w, std::source_location where, SuspendKind kind) noexcept {
  TaskHeader* t = w->current.load(std::memory_order_relaxed);
  if (TraceRing* r = w->tracing()) [[unlikely]]
    trace_suspend(w, r, where, kind);
  TaskFrame* f = t->frame;
  // relaxed: a diagnostic only (see frame.hpp).
  f->where_file.store(where.file_name(), std::memory_order_relaxed);
  f->where_function.store(where.function_name(), std::memory_order_relaxed);
  f->where_line.store(where.line(), std::memory_order_relaxed);
  // The thread's globals live at a fixed address per thread: each worker looked it up
  // once (a __tls_get_addr call into libstdc++ otherwise, twice per switch).
  auto* g = static_cast<EhGlobals*>(w->eh_globals);
  const EhGlobals saved = *g;
  *g = EhGlobals{nullptr, 0};
  if (TaskHeader* next = w->next_for_direct_switch()) {
    // Direct switch: run the next ready fibre without a round trip through the worker's
    // own context. We are still on our stack, so we must not be published yet: the
    // on-top function below runs on `next`'s stack once we are fully saved, stores our
    // context and publishes us (invariant 1: suspend, then publish). The worker's own
    // context travels with the running fibre, in `handoff_back`. (A plain resume, with
    // `next` publishing us once its own switch returned, ran fewer instructions but
    // measured slower: 22 ns per yield against 15.)
    TaskFrame* nf = next->frame;
    task_state::run(next);  // as in run_task
    w->switch_prev = t;
    w->step_ended(t, false);
    w->current.store(next, std::memory_order_relaxed);
    w->step_began(next, false);
    w->handoff_back = std::move(f->back);
    boost::context::fiber target = std::move(nf->ctx);
#if defined(SPINDLE_ASAN)
    san::start_switch(&f->asan_fake, nf->stack.guard_end(), nf->stack.usable());
#endif
    san::tsan_switch_to(nf->tsan_fiber);
    f->back = std::move(target).resume_with(&publish_previous);
  } else {
    san::start_switch(&f->asan_fake, f->back_bottom, f->back_size);
    san::tsan_switch_to(w->tsan_fiber);
    f->back = std::move(f->back).resume();
  }
  // We may be on another thread now: `w` is stale. Whoever resumed us (the worker, or
  // another fibre in a direct switch) handed us the worker's context as `back`.
  Worker* now = current_worker();
  *static_cast<EhGlobals*>(now->eh_globals) = saved;  // this thread's, maybe not the one we left
  san::finish_switch(f->asan_fake, nullptr, nullptr);
  f->back_bottom = now->stack_bottom;  // switching back means switching to the worker's stack
  f->back_size = now->stack_size;
}
}  // namespace

void suspend_current(std::source_location where, SuspendKind kind) noexcept {
  suspend_on(current_worker(), where, kind);
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
  if ((t->word.load(std::memory_order_acquire) & kCancelReq) && cancel_pending(t)) throw take_cancel(t);
  // The worker requeues us at the back of its queue once we have switched out. Not a
  // task that shutdown abandoned: requeued, it would keep its worker busy for ever (the
  // worker only stops when it runs dry); it stays suspended instead. relaxed: the bit is
  // set by shutdown before it stops the workers, and only ever set.
  w->yielding = !(t->word.load(std::memory_order_relaxed) & kAbandoned);
  suspend_on(w, where, SuspendKind::yield);
  // `w` is stale now (we may be on another thread); t is still ours.
  if ((t->word.load(std::memory_order_acquire) & kCancelReq) && cancel_pending(t)) throw take_cancel(t);
}

}  // namespace spindle
