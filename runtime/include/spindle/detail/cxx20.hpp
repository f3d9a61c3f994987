// Included first by every public header, so that a program built with a compiler or
// language mode spindle cannot use fails with one clear line here instead of hundreds
// of errors deep inside the other headers. Supported: g++ >= 12, clang >= 16 (README.md).
//
// Each check stops the compilation with a fatal error whose text is the message: an
// #error would be followed by every error the rest of the headers then cause, while a
// missing include is fatal in g++ and clang alike ("fatal error: spindle needs C++20
// (-std=c++20): No such file or directory").
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#include "spindle needs C++20 (-std=c++20)"
#endif

// <version> defines the standard library's feature macros. libstdc++ 12 offers
// std::source_location (the waiting functions' default arguments) only when the compiler
// has __builtin_source_location, which clang before 15 lacks.
#include <version>
#ifndef __cpp_lib_source_location
#include "spindle needs std::source_location: use g++ >= 12 or clang >= 16"
#endif
