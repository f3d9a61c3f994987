#!/usr/bin/env python3
"""Compiles a source file (syntax only) with one compiler against spindle's headers and
checks the outcome: `clean` expects no diagnostic at all under -Wall -Wextra -Werror;
`one-error TEXT` expects the compilation to fail with exactly one error, containing TEXT
(consumer.cpp: the message of spindle/detail/cxx20.hpp; tests/compile_fail.cpp: what a
misuse of a typed API gets). Options after those: -DNAME=VALUE is passed to the compiler;
--note=TEXT also requires TEXT somewhere in the output (in a note under the error, say).
Exit 77 (meson: skipped) when the compiler is not installed.

Usage: compile_check.py COMPILER STD SOURCE INCDIRS(:-separated) clean|one-error [TEXT]
                        [-DNAME=VALUE...] [--note=TEXT...]"""
import shutil
import subprocess
import sys


def main(compiler, std, source, incdirs, expect, *rest):
    text = rest[0] if expect == "one-error" and rest else ""
    options = rest[1:] if expect == "one-error" else rest
    defines = [o for o in options if o.startswith("-D")]
    notes = [o[len("--note="):] for o in options if o.startswith("--note=")]
    unknown = [o for o in options if not o.startswith(("-D", "--note="))]
    if unknown:
        print(f"unknown options: {unknown}")
        return 2
    if shutil.which(compiler) is None:
        print(f"{compiler} not installed: skipped")
        return 77
    cmd = [compiler, f"-std={std}", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", *defines]
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
    for n in notes:
        if n not in out:
            print(f"expected the output to say '{n}'")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
