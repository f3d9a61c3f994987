// Everything in spindle's I/O module: #include <spindle/io.hpp>.
#pragma once

#include <spindle/detail/cxx20.hpp>

#include <spindle/io/address.hpp>
#include <spindle/io/errors.hpp>
#include <spindle/io/process.hpp>
#include <spindle/io/stream.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/io/udp.hpp>
#include <spindle/io/signals.hpp>
#include <spindle/io/unix.hpp>
