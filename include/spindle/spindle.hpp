// Everything in spindle: #include <spindle/spindle.hpp>. Each module has one include of
// its own as well: <spindle/runtime.hpp>, <spindle/sync.hpp>, <spindle/io.hpp>,
// <spindle/executors.hpp>.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <spindle/executors.hpp>
#include <spindle/io.hpp>
#include <spindle/runtime.hpp>
#include <spindle/sync.hpp>
