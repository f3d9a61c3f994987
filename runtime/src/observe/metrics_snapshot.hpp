// Runtime::metrics() (spindle/metrics.hpp): a snapshot summed from the per-worker
// counters, also printed by the monitor console.
#pragma once

#include <spindle/metrics.hpp>

namespace spindle::detail {

class RuntimeImpl;

Metrics snapshot_metrics(RuntimeImpl* rt);

}  // namespace spindle::detail
