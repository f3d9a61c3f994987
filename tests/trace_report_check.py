#!/usr/bin/env python3
"""The trace_report test: runs tests/trace_example.cpp (a known schedule) with tracing
over 1, 2, 4 and 8 loops, then scripts/trace_report.py on each trace with --png, and
checks the figures it prints against that schedule and that the PNG was drawn.

Usage: trace_report_check.py TRACE_EXAMPLE TRACE_REPORT_PY
(run by the interpreter that has matplotlib: Debian's python3-matplotlib)."""
import os
import re
import subprocess
import sys
import tempfile


def main():
    example, script = sys.argv[1], sys.argv[2]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2, 4, 8):
            trace = os.path.join(tmp, f"trace{workers}.json")
            png = os.path.join(tmp, f"trace{workers}.png")
            subprocess.run([example, trace, str(workers)], check=True, timeout=120)
            out = subprocess.run([sys.executable, script, trace, "--png", png], check=True, timeout=300,
                                 capture_output=True, text=True).stdout
            rows = {}
            for line in out.splitlines():
                m = re.match(r"\s+(\S+)\s+(\d+)\s+.*\s(\d+)$", line)
                if m and m.group(1) in ("sleeper", "waiter", "setter", "yielder", "main"):
                    rows[m.group(1)] = (int(m.group(2)), int(m.group(3)))
            want = {"sleeper": (6, 5), "waiter": (2, 1), "yielder": (32, None)}
            for name, (steps, wakes) in want.items():
                got = rows.get(name)
                if got is None or got[0] != steps or (wakes is not None and got[1] != wakes):
                    failures.append(f"{workers} loops: {name}: want {steps} steps, {wakes} wake-ups; got {got}")
            # Latency columns are figures, not dashes, for tasks that were woken.
            for name in ("sleeper", "waiter"):
                line = next((l for l in out.splitlines() if l.strip().startswith(name + " ")), "")
                if line.count(" us") + line.count(" ms") < 4:  # time, median, p99, max
                    failures.append(f"{workers} loops: {name}: no latency figures in {line!r}")
            if not re.search(r"^Longest steps", out, re.M):
                failures.append(f"{workers} loops: no longest-steps table")
            loops = re.findall(r"^\s+loop (\d+)\s+steps", out, re.M)
            if sorted(int(x) for x in loops) != list(range(workers)):
                failures.append(f"{workers} loops: per-loop rows {loops}")
            if not re.search(r"^\s+to_thread\s+1\s", out, re.M):
                failures.append(f"{workers} loops: the to_thread job is not listed")
            if "Dropped events: 0" not in out:
                failures.append(f"{workers} loops: dropped events")
            with open(png, "rb") as f:
                head = f.read(8)
            if head != b"\x89PNG\r\n\x1a\n" or os.path.getsize(png) < 10_000:
                failures.append(f"{workers} loops: no PNG drawn ({os.path.getsize(png)} bytes)")
            if failures:
                print(out)
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
