// Everything in spindle: #include <spindle/spindle.hpp>.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <spindle/errors.hpp>
#include <spindle/future.hpp>
#include <spindle/generator.hpp>
#include <spindle/job_scheduler.hpp>
#include <spindle/options.hpp>
#include <spindle/result.hpp>
#include <spindle/runtime.hpp>
#include <spindle/task.hpp>
#include <spindle/task_group.hpp>
#include <spindle/time_limit.hpp>
#include <spindle/timers.hpp>
#include <spindle/waiting.hpp>

// The other modules (same library).
#include <spindle/executors/executors.hpp>
#include <spindle/io/io.hpp>
#include <spindle/sync.hpp>
