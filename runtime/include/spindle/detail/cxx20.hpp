// Included first by every public header, so that a program built with a compiler or
// language mode spindle cannot use fails with one clear line here instead of errors
// deep inside the other headers. Supported: g++ >= 12, clang >= 16 (README.md).
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "spindle needs C++20 (-std=c++20)"
#else
// <version> is cheap and defines the library's feature macros. libstdc++ 12 offers
// std::source_location (used by the waiting functions' defaults) only when the compiler
// has __builtin_source_location, which clang before 15 lacks.
#include <version>
#ifndef __cpp_lib_source_location
#error "spindle needs std::source_location: use g++ >= 12 or clang >= 16"
#endif
#endif
