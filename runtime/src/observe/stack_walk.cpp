#include "observe/stack_walk.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <unwind.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <boost/context/fiber.hpp>

#include "core/frame.hpp"
#include "sched/runtime_impl.hpp"
#include "core/sanitizer.hpp"
#include "core/task_state.hpp"

#if defined(SPINDLE_HAVE_LIBBACKTRACE)
#include <backtrace.h>
#endif

namespace spindle::detail {

namespace {

// The saved context is Boost.Context's fcontext_t, the fiber's only member.
static_assert(sizeof(boost::context::fiber) == sizeof(void*), "boost::context::fiber is not one fcontext_t");

// The fibre's saved stack pointer (Boost.Context's fcontext_t).
uintptr_t saved_sp(const TaskFrame* f) noexcept {
  void* fctx;
  std::memcpy(&fctx, &f->ctx, sizeof fctx);
  return reinterpret_cast<uintptr_t>(fctx);
}

// jump_fcontext / ontop_fcontext's frame (Boost 1.74, x86-64 SysV), at the saved stack
// pointer: 0x00 mxcsr/x87 cw, 0x08 r12, 0x10 r13, 0x18 r14, 0x20 r15, 0x28 rbx, 0x30
// rbp, 0x38 the return address into the code that switched.
constexpr uintptr_t kSavedRbp = 0x30, kSavedRet = 0x38, kSavedFrame = 0x40;

// The return address the fibre's switch saved (see walk_frame_pointers on reading it).
__attribute__((no_sanitize("address"))) uintptr_t saved_ret(uintptr_t sp) noexcept {
  return *reinterpret_cast<const uintptr_t*>(sp + kSavedRet);
}

// Reads the fibre's stack, which is not ours: ASan's shadow for it describes the frames
// of a fibre that is not running, so the reads are not instrumented. Bounds are checked
// by hand instead.
__attribute__((no_sanitize("address"))) std::size_t walk_frame_pointers(const TaskFrame* f, uintptr_t* out,
                                                                        std::size_t max) noexcept {
#if defined(__x86_64__)
  const auto lo = reinterpret_cast<uintptr_t>(f->stack.guard_end());
  const auto hi = reinterpret_cast<uintptr_t>(f->stack.top());
  auto inside = [lo, hi](uintptr_t p, uintptr_t len) { return p >= lo && p <= hi && hi - p >= len; };
  const uintptr_t sp = saved_sp(f);
  if (max == 0 || !inside(sp, kSavedFrame) || (sp & 7)) return 0;
  std::size_t n = 0;
  out[n++] = *reinterpret_cast<const uintptr_t*>(sp + kSavedRet);
  uintptr_t floor = sp + kSavedFrame;  // a caller's frame lies above everything below it
  uintptr_t fp = *reinterpret_cast<const uintptr_t*>(sp + kSavedRbp);
  while (n < max && inside(fp, 16) && (fp & 7) == 0 && fp >= floor) {
    const uintptr_t ret = *reinterpret_cast<const uintptr_t*>(fp + 8);
    if (ret == 0) break;
    out[n++] = ret;
    floor = fp + 16;
    fp = *reinterpret_cast<const uintptr_t*>(fp);
  }
  return n;
#else
  (void)f, (void)out, (void)max;
  return 0;
#endif
}

#if defined(__x86_64__)
// The DWARF unwinder (libgcc's, which C++ exceptions use) only walks the stack it runs
// on. So it runs on the fibre's: Boost.Context's resume_with switches into the
// suspended fibre and calls a function on top of its frames, exactly as if the fibre's
// own switch had called it; that function unwinds, then switches back, leaving the fibre
// suspended inside it. When the fibre is really resumed later (by a loop, or by a direct
// switch with its publishing function on top), that function just returns what it is
// given, which is what the fibre's original switch expects. The sanitizer annotations follow
// the two switches as for any other.
struct OnTop {
  TaskFrame* f;
  uintptr_t* out;
  std::size_t max, n;
  void* caller_tsan;
  const void* caller_bottom;
  std::size_t caller_size;
};

_Unwind_Reason_Code on_frame(_Unwind_Context* ctx, void* arg) {
  auto* c = static_cast<OnTop*>(arg);
  const uintptr_t ip = _Unwind_GetIP(ctx);
  if (ip == 0 || c->n == c->max) return _URC_END_OF_STACK;
  c->out[c->n++] = ip;
  return _URC_NO_REASON;
}

boost::context::fiber unwind_on_top(OnTop* c, boost::context::fiber&& caller) {
  TaskFrame* f = c->f;
  san::finish_switch(f->asan_fake, &c->caller_bottom, &c->caller_size);
  _Unwind_Backtrace(on_frame, c);
  san::start_switch(&f->asan_fake, c->caller_bottom, c->caller_size);
  san::tsan_switch_to(c->caller_tsan);
  // `c` lives on the caller's stack: not to be touched once we switch back.
  return std::move(caller).resume();
}

// Enough stack below the fibre's saved stack pointer for the unwinder to run there.
constexpr uintptr_t kUnwindHeadroom = 64 * 1024;

std::size_t unwind(TaskFrame* f, uintptr_t* out, std::size_t max) noexcept {
  const uintptr_t sp = saved_sp(f);
  const auto lo = reinterpret_cast<uintptr_t>(f->stack.guard_end());
  if (sp < lo || sp - lo < kUnwindHeadroom) return walk_frame_pointers(f, out, max);  // too deep for that
  const uintptr_t ret0 = saved_ret(sp);
  OnTop c{f, out, max, 0, san::tsan_current(), nullptr, 0};
  void* my_fake = nullptr;
  san::start_switch(&my_fake, f->stack.guard_end(), f->stack.usable());
  san::tsan_switch_to(f->tsan_fiber);
  f->ctx = std::move(f->ctx).resume_with(
      [&c](boost::context::fiber&& caller) { return unwind_on_top(&c, std::move(caller)); });
  san::finish_switch(my_fake, nullptr, nullptr);
  // The frames above the fibre's own switch are ours (the unwinder's caller and Boost's
  // on-top call): start at the address the fibre's switch returns to.
  std::size_t first = 0;
  while (first < c.n && c.out[first] != ret0) ++first;
  if (first == c.n) return walk_frame_pointers(f, out, max);  // not found: be safe
  std::memmove(out, out + first, (c.n - first) * sizeof *out);
  return c.n - first;
}
#else
std::size_t unwind(TaskFrame*, uintptr_t*, std::size_t) noexcept { return 0; }
#endif

std::string demangle(const char* name) {
  if (!name) return {};
  if (name[0] == '_' && name[1] == 'Z') {
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    if (status == 0 && d) {
      std::string s(d);
      std::free(d);
      return s;
    }
    std::free(d);
  }
  return name;
}

#if defined(SPINDLE_HAVE_LIBBACKTRACE)
void on_backtrace_error(void*, const char*, int) {}  // no debug info, say: fall back

backtrace_state* bt_state() {
  // Made once, for the program (/proc/self/exe) and the shared objects it loads;
  // `threaded`: used from any thread. libbacktrace's state is never freed.
  static backtrace_state* s = backtrace_create_state(nullptr, 1, on_backtrace_error, nullptr);
  return s;
}

struct Lookup {
  std::vector<StackFrame>* out;
  uintptr_t pc;
  bool any = false;
};
#endif

void by_dladdr(uintptr_t pc, StackFrame& f) {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(pc - 1), &info) == 0) return;
  if (info.dli_sname && f.function.empty()) f.function = demangle(info.dli_sname);
  if (info.dli_fname) {
    const char* slash = std::strrchr(info.dli_fname, '/');
    char off[32];
    std::snprintf(off, sizeof off, "+0x%lx",
                  static_cast<unsigned long>(pc - reinterpret_cast<uintptr_t>(info.dli_fbase)));
    f.module = std::string(slash ? slash + 1 : info.dli_fname) + off;
  }
}

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// The frames every fibre has, which say nothing about where it waits: the switch itself
// (Boost.Context) at the inner end; at the outer end the entry (fibre_main and what calls
// it) and, when the debug information shows inlined calls, the call of the task's body
// (TaskImpl::run and std::invoke's layers). Named from the debug information (short
// names) or the symbol table (qualified ones).
void trim_plumbing(std::vector<StackFrame>& fs) {
  std::size_t first = 0;
  while (first < fs.size() && starts_with(fs[first].function, "boost::context::")) ++first;
  std::size_t last = fs.size();
  for (std::size_t i = first; i < fs.size(); ++i) {
    if (fs[i].function.find("fibre_main") != std::string::npos) {
      last = i;
      break;
    }
  }
  for (std::size_t i = first; i < fs.size() && last == fs.size(); ++i)
    if (fs[i].function.find("make_fibre") != std::string::npos) last = i;  // fibre_main inlined there
  auto entry_layer = [](const StackFrame& f) {
    const std::string& fn = f.function;
    // (Not TaskImpl<...>::run named from the symbol table: without debug information it
    // stands for the task's own function, inlined into it.)
    return starts_with(fn, "__invoke") || starts_with(fn, "invoke<") || starts_with(fn, "std::__invoke") ||
           starts_with(fn, "std::invoke") || (fn == "run" && f.file.find("task_header.hpp") != std::string::npos);
  };
  if (last < fs.size())
    while (last > first && entry_layer(fs[last - 1])) --last;
  fs.erase(fs.begin() + std::ptrdiff_t(last), fs.end());
  fs.erase(fs.begin(), fs.begin() + std::ptrdiff_t(first));
}

}  // namespace

std::vector<StackFrame> describe_stack(const std::vector<uintptr_t>& pcs) {
  std::vector<StackFrame> fs = symbolise(pcs);
  trim_plumbing(fs);
  return fs;
}

std::vector<uintptr_t> capture_stack(TaskHeader* t) {
  std::vector<uintptr_t> pcs(kMaxFrames);
  if (task_state::hold(t) == task_state::Hold::busy) return {};
  TaskFrame* f = t->frame;  // the fibre exists while the task is started and not ended
  RuntimeImpl* rt = f->rt;
  pcs.resize(unwind(f, pcs.data(), pcs.size()));
  // Let go as a loop does after a switch (Worker::after_suspend): requeued if a wake-up
  // came meanwhile.
  if (task_state::release(t) == task_state::Release::must_schedule) rt->make_ready(t, false);
  return pcs;
}

std::vector<StackFrame> symbolise(const std::vector<uintptr_t>& pcs) {
  std::vector<StackFrame> out;
  for (uintptr_t pc : pcs) {
#if defined(SPINDLE_HAVE_LIBBACKTRACE)
    if (backtrace_state* s = bt_state()) {
      Lookup l{&out, pc};
      // Once per frame, inlined calls first (innermost first).
      backtrace_pcinfo(
          s, pc - 1,
          [](void* data, uintptr_t, const char* file, int line, const char* fn) -> int {
            auto* l = static_cast<Lookup*>(data);
            if (!file && !fn) return 0;
            StackFrame f;
            f.pc = l->pc;
            f.function = demangle(fn);
            if (file) f.file = file;
            f.line = line > 0 ? unsigned(line) : 0;
            l->out->push_back(std::move(f));
            l->any = true;
            return 0;
          },
          on_backtrace_error, &l);
      if (l.any) continue;
      // No line information: the symbol table may still name it.
      StackFrame f;
      f.pc = pc;
      backtrace_syminfo(
          s, pc - 1,
          [](void* data, uintptr_t, const char* sym, uintptr_t, uintptr_t) {
            if (sym) static_cast<StackFrame*>(data)->function = demangle(sym);
          },
          on_backtrace_error, &f);
      by_dladdr(pc, f);
      out.push_back(std::move(f));
      continue;
    }
#endif
    StackFrame f;
    f.pc = pc;
    by_dladdr(pc, f);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace spindle::detail
