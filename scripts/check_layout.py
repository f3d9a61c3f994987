#!/usr/bin/env python3
"""The module edges of docs/architecture.md ("Layout"), checked on the sources.

The build already gives each module only the include directories it may use, so an
angle or quoted include of another module's private header fails to compile. What the
compiler cannot refuse is a quoted include that climbs out of its own folder ("../"),
which it resolves from the including file's directory whatever the include path. This
check refuses those, and checks the rest of the rules as well:

  * no library file includes a path with "..";
  * public headers (<area>/include, include/) include only public spindle headers
    (<spindle/...> outside spindle/internal) and nothing by quotes;
  * runtime/src includes by quotes only its own files ("sched/worker.hpp");
  * sync, io and executors include by quotes only their own src/ files, and by angle
    brackets only their own public headers, the runtime's, and
    <spindle/internal/runtime_services.hpp>;
  * the task scheduling-state word is written only in runtime/src/core/task_state.hpp
    (when that file exists).

Usage: check_layout.py [ROOT]. Exit status 1 with one line per violation.
"""
import pathlib
import re
import sys

AREAS = ["runtime", "sync", "io", "executors"]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
STATE_WRITE = re.compile(r"\bsched\s*\.\s*(store|exchange|compare_exchange_\w+|fetch_\w+)\s*\(")


def public_header_exists(root, area, name):
    return (root / area / "include" / name).is_file()


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    bad = []

    def files(folder):
        d = root / folder
        return sorted(p for p in d.rglob("*") if p.suffix in (".hpp", ".cpp", ".h")) if d.is_dir() else []

    def includes(path):
        return INCLUDE.findall(path.read_text(encoding="utf-8"))

    public = [p for a in AREAS for p in files(f"{a}/include")] + files("include")
    for p in public:
        for kind, name in includes(p):
            rel = p.relative_to(root)
            if kind == '"':
                # detail/cxx20.hpp's deliberate missing includes: its one-line error message.
                if not name.startswith("spindle needs "):
                    bad.append(f"{rel}: public header includes \"{name}\" by quotes")
            elif name.startswith("spindle/internal/"):
                bad.append(f"{rel}: public header includes the internal <{name}>")
            elif name.startswith("spindle/") and not any(
                    public_header_exists(root, a, name) for a in AREAS + [""]) and not (root / "include" / name).is_file():
                bad.append(f"{rel}: <{name}> is not a public header")

    for area in AREAS:
        srcs = files(f"{area}/src") + (files("runtime/internal") if area == "runtime" else [])
        allowed_angle = {"runtime", area}
        for p in srcs:
            rel = p.relative_to(root)
            for kind, name in includes(p):
                if ".." in pathlib.PurePosixPath(name).parts:
                    bad.append(f"{rel}: \"{name}\" climbs out of its folder")
                    continue
                if kind == '"':
                    here = (p.parent / name).is_file()
                    rooted = (root / area / "src" / name).is_file() if area == "runtime" else False
                    if not (here or rooted):
                        bad.append(f"{rel}: \"{name}\" is not a file of {area}/src")
                elif name.startswith("spindle/internal/"):
                    if not (root / "runtime" / "internal" / name).is_file():
                        bad.append(f"{rel}: <{name}> does not exist")
                elif name.startswith("spindle/"):
                    if not any(public_header_exists(root, a, name) for a in allowed_angle):
                        owner = [a for a in AREAS if public_header_exists(root, a, name)]
                        bad.append(f"{rel}: <{name}> belongs to {owner or 'no module'}, which {area} may not use")

    state_file = root / "runtime/src/core/task_state.hpp"
    if state_file.is_file():
        for folder in [f"{a}/src" for a in AREAS] + [f"{a}/include" for a in AREAS] + ["runtime/internal"]:
            for p in files(folder):
                if p == state_file:
                    continue
                for m in STATE_WRITE.finditer(p.read_text(encoding="utf-8")):
                    line = p.read_text(encoding="utf-8").count("\n", 0, m.start()) + 1
                    bad.append(f"{p.relative_to(root)}:{line}: writes the task state word outside task_state.hpp")

    for b in bad:
        print(b)
    print(f"check_layout: {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
