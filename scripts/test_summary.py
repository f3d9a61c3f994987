#!/usr/bin/env python3
"""Sums up the test results of several build directories and prints one closing line,
"N passed, N failed"; exits non-zero if anything failed, a build has no results, or no
test ran at all. A directory's results are meson's (meson-logs/testlog.json) or ctest's
(junit.xml, from `ctest --output-junit`: tests/consumer/'s CMake build)."""
import json
import pathlib
import sys
import xml.etree.ElementTree as ET


def results(d):
    """The (name, result) of each test run in build directory d, result as meson names
    it (OK, FAIL, SKIP, ...); None when d has no results."""
    log = pathlib.Path(d) / "meson-logs" / "testlog.json"
    if log.exists():
        return [(r.get("name"), r.get("result"))
                for r in map(json.loads, log.read_text().splitlines())]
    junit = pathlib.Path(d) / "junit.xml"
    if junit.exists():
        out = []
        for case in ET.parse(junit).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                res = "FAIL"
            elif case.find("skipped") is not None or case.get("status") in ("notrun", "disabled"):
                res = "SKIP"
            else:
                res = "OK"
            out.append((case.get("name"), res))
        return out
    return None


def main(dirs):
    passed = failed = skipped = 0
    bad = []
    for d in dirs:
        runs = results(d)
        if runs is None:
            print(f"{d}: no test results (build or test run failed)")
            bad.append(d)
            continue
        for name, res in runs:
            if res in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif res == "SKIP":
                skipped += 1
            else:
                failed += 1
                bad.append(f"{d}: {name} ({res})")
        print(f"{d}: {len(runs)} test programs")
    for b in bad:
        print("FAILED:", b)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if (failed or bad or passed == 0) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
