// Internals of Runtime::metrics() (runtime/include/spindle/metrics.hpp): the hook the
// executors module provides so that the runtime can report its blocking pool without
// depending on it.
#pragma once

#include <cstddef>

#include <spindle/metrics.hpp>

namespace spindle::detail {

class RuntimeImpl;

struct BlockingPoolStats {
  std::size_t threads = 0, busy = 0, queued = 0;
};

/// The blocking pool of rt, read only: zeros if it has not been made. Any thread.
/// Defined next to the pool (executors/src/blocking_pool.cpp).
BlockingPoolStats blocking_pool_stats(RuntimeImpl* rt) noexcept;

Metrics snapshot_metrics(RuntimeImpl* rt);

}  // namespace spindle::detail
