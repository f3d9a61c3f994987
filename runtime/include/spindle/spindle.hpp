// Everything in spindle: #include <spindle/spindle.hpp>.
#pragma once

#include <spindle/errors.hpp>
#include <spindle/future.hpp>
#include <spindle/options.hpp>
#include <spindle/runtime.hpp>
#include <spindle/task.hpp>
#include <spindle/timers.hpp>

// The other modules (same library).
#include <spindle/executors/executors.hpp>
#include <spindle/io/io.hpp>
