// Everything in spindle: #include <spindle/spindle.hpp>.
#pragma once

#include <spindle/errors.hpp>
#include <spindle/future.hpp>
#include <spindle/options.hpp>
#include <spindle/runtime.hpp>
#include <spindle/task.hpp>
#include <spindle/timers.hpp>
