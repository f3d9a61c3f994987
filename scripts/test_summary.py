#!/usr/bin/env python3
"""Sums up `meson test` results of several build directories (their testlog.json) and
prints one closing line, "N passed, N failed"; exits non-zero if anything failed, a
build has no results, or no test ran at all."""
import json
import pathlib
import sys


def main(dirs):
    passed = failed = skipped = 0
    bad = []
    for d in dirs:
        log = pathlib.Path(d) / "meson-logs" / "testlog.json"
        if not log.exists():
            print(f"{d}: no test results (build or test run failed)")
            bad.append(d)
            continue
        n = 0
        for line in log.read_text().splitlines():
            r = json.loads(line)
            n += 1
            res = r.get("result")
            if res in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif res == "SKIP":
                skipped += 1
            else:
                failed += 1
                bad.append(f"{d}: {r.get('name')} ({res})")
        print(f"{d}: {n} test programs")
    for b in bad:
        print("FAILED:", b)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if (failed or bad or passed == 0) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
