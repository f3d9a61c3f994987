// Annotations that let ASan and TSan follow fibre switches (Boost 1.74 does not make
// them). Compiled to nothing unless the build defines SPINDLE_ASAN / SPINDLE_TSAN (the
// root meson.build does so from b_sanitize).
#pragma once

#include <cstddef>

#if defined(SPINDLE_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(SPINDLE_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace spindle::detail::san {

// ASan: call start() just before a switch, finish() just after arriving on the other
// side. `fake` keeps the fake-stack of the context being left; passing nullptr to start()
// says that context is finished and its fake stack may be freed.
inline void start_switch(void** fake, const void* bottom, std::size_t size) noexcept {
#if defined(SPINDLE_ASAN)
  __sanitizer_start_switch_fiber(fake, bottom, size);
#else
  (void)fake, (void)bottom, (void)size;
#endif
}
inline void finish_switch(void* fake, const void** old_bottom, std::size_t* old_size) noexcept {
#if defined(SPINDLE_ASAN)
  __sanitizer_finish_switch_fiber(fake, old_bottom, old_size);
#else
  (void)fake, (void)old_bottom, (void)old_size;
#endif
}

// TSan: each fibre is a TSan fibre; switch_to() is called just before the switch.
inline void* tsan_current() noexcept {
#if defined(SPINDLE_TSAN)
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}
inline void* tsan_create() noexcept {
#if defined(SPINDLE_TSAN)
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}
inline void tsan_destroy(void* f) noexcept {
#if defined(SPINDLE_TSAN)
  if (f) __tsan_destroy_fiber(f);
#else
  (void)f;
#endif
}
inline void tsan_switch_to(void* f) noexcept {
#if defined(SPINDLE_TSAN)
  __tsan_switch_to_fiber(f, 0);
#else
  (void)f;
#endif
}

}  // namespace spindle::detail::san
