// Everything in spindle's executors module: #include <spindle/executors.hpp>.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <spindle/executors/executor.hpp>
#include <spindle/executors/thread_pool.hpp>
#include <spindle/executors/process_pool.hpp>
