#!/usr/bin/env python3
"""Compiles consumer.cpp (syntax only) with one compiler against spindle's headers and
checks the outcome: `clean` expects no diagnostic at all under -Wall -Wextra -Werror;
`one-error TEXT` expects the compilation to fail with exactly one error, containing TEXT
(the message of spindle/detail/cxx20.hpp). Exit 77 (meson: skipped) when the compiler
is not installed.

Usage: compile_check.py COMPILER STD SOURCE INCDIRS(:-separated) clean|one-error [TEXT]"""
import shutil
import subprocess
import sys


def main(compiler, std, source, incdirs, expect, text=""):
    if shutil.which(compiler) is None:
        print(f"{compiler} not installed: skipped")
        return 77
    cmd = [compiler, f"-std={std}", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"]
    cmd += [f"-I{d}" for d in incdirs.split(":") if d] + [source]
    print(" ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = r.stdout + r.stderr
    print(out)
    if expect == "clean":
        ok = r.returncode == 0 and out.strip() == ""
    else:
        errors = [l for l in out.splitlines() if "error" in l and ": " in l and "note:" not in l
                  and not l.lstrip().startswith(("#include", "In file included", "from "))]
        ok = r.returncode != 0 and len(errors) == 1 and text in errors[0]
        if not ok:
            print(f"expected one error saying '{text}', got {len(errors)}: {errors[:5]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
