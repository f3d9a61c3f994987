#!/usr/bin/env python3
"""Runs spindle's benchmark suite (the workloads listed in README.md, "Benchmarks") and prints one table:
spindle beside its peer (Boost.Fiber) and the floor, with the spindle/peer ratio.

Every workload runs alone in its own process, because peak RSS (VmHWM) is process-wide
and Boost.Fiber's work_stealing can be set up only once per process. Each process runs
R repetitions (default 3; QUICK=1 in the environment means 1 — sizes never shrink) and
the median of each figure is reported. Raw figures go to bench-results/latest.json.

The contended rows (scripts/bench_contended.py) run some workloads again beside busy-loop
processes: at least 5 repetitions (QUICK=1: 3), reported as median and worst.

Usage: scripts/bench.py [--build DIR] [--only REGEX]   (default DIR: build/release)
  --only REGEX: run only the workloads whose key matches (re.search): "binary/benchmark"
  (bench_runtime/idle_w2), "net/<workload>_w<threads>" (net/http_paced_w1) or
  "contended/<workload>" (contended/skynet_w2); the table keeps the rows that ran, and
  the raw figures go to bench-results/only.json (no report, latest.json untouched).
Exit status: 0 when every workload ran and passed its own result check, 1 otherwise.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME, PEER = "bench_runtime", "bench_peer_fiber"
# bench_runtime linked against the library built with its metrics compiled out
# (benchmarks/meson.build): the cost of metrics, measured beside it in the same run.
NOMETRICS = "bench_runtime_nometrics"
# ... and against the library built with the execution trace's hooks compiled out: the
# cost of tracing while it is off. Its cost while on: skynet_w2_traced beside skynet_w2.
NOTRACE = "bench_runtime_notrace"
TIMEOUT_S = 1800  # per process; spawn_join on Boost.Fiber alone takes ~10-30 s per run

# The processes to run: (binary, benchmark name as registered).
RUNS = [(RUNTIME, n) for n in
        ("yield_pingpong_w1", "spawn_join_w1", "spawn_join_w2", "skynet_w2", "cross_thread_pingpong_w2")]
RUNS += [(NOMETRICS, "skynet_w2")]
RUNS += [(NOTRACE, "skynet_w2"), (RUNTIME, "skynet_w2_traced")]
RUNS += [(PEER, n) for n in
         ("yield_pingpong_w1", "spawn_join_w1", "spawn_join_w2", "skynet_w2", "cross_thread_pingpong_w2",
          "yield_pingpong_floor", "cross_thread_pingpong_floor", "cross_thread_pingpong_suspend_w2")]

# Other areas: (spindle binary, peer binary, workloads registered in both).
AREAS = [("bench_timers", "peer_fiber_timers", ("timers_w2", "timer_cancel_w2", "wait_for_w2"))]
AREAS += [("bench_sync", "peer_fiber_sync",
           ("mpsc_w2", "lock_uncontended_w2", "lock_contended_w2", "event_latency_w2", "idle_memory_w2"))]
# Executors: the peer binary's same-named workloads are std::async (to_thread_*) and a
# raw socketpair round trip to a child (process_call_*, the floor); Asio runs below.
AREAS += [("bench_executors", "peer_executors",
           ("to_thread_latency", "to_thread_throughput", "process_call_empty", "process_call_1mib"))]
RUNS += [("peer_executors", n) for n in ("to_thread_latency_asio", "to_thread_throughput_asio")]
RUNS += [("peer_fiber_timers", "timers_floor_w2")]
# Idle: a runtime with no work (spindle only; its floor is the target, 1% of one CPU).
IDLE_WORKERS = (2, 4, 8)
RUNS += [(RUNTIME, f"idle_w{n}") for n in IDLE_WORKERS]
for s_bin, p_bin, names in AREAS:
    RUNS += [(s_bin, n) for n in names] + [(p_bin, n) for n in names]

# The table: (workload, figure, counter, spindle/peer benchmark, floor, better).
# The benchmark is a name registered in both bench_runtime and bench_peer_fiber, or a
# pair of names, or a pair of (binary, name).
# floor is None, a constant, or (binary, benchmark, counter).
ROWS = [
    ("yield_pingpong (1 thread)", "ns per yield", "ns_per_yield", "yield_pingpong_w1",
     (PEER, "yield_pingpong_floor", "ns_per_switch"), "lower"),
    ("spawn_join (1 thread)", "ns per task", "ns_per_task", "spawn_join_w1", None, "lower"),
    ("spawn_join (1 thread)", "peak RSS MiB", "peak_rss_mb", "spawn_join_w1", None, "lower"),
    ("spawn_join (2 threads)", "ns per task", "ns_per_task", "spawn_join_w2", None, "lower"),
    ("spawn_join (2 threads)", "peak RSS MiB", "peak_rss_mb", "spawn_join_w2", None, "lower"),
    ("skynet (2 threads)", "total ms", "total_ms", "skynet_w2", None, "lower"),
    ("skynet (2 threads)", "peak RSS MiB", "peak_rss_mb", "skynet_w2", None, "lower"),
    # The peer here is spindle itself with metrics compiled out: the ratio is their cost.
    ("skynet (2 threads) vs metrics off", "total ms", "total_ms",
     ((RUNTIME, "skynet_w2"), (NOMETRICS, "skynet_w2")), None, "lower"),
    # The execution trace: off (the default build) against its hooks compiled out, and on
    # (written to a temporary file) against off. CPU ms is the process's user+sys time over
    # the run, the trace's writer thread included.
    ("skynet (2 threads), trace off vs compiled out", "total ms", "total_ms",
     ((RUNTIME, "skynet_w2"), (NOTRACE, "skynet_w2")), None, "lower"),
    ("skynet (2 threads), trace off vs compiled out", "CPU ms", "cpu_ms",
     ((RUNTIME, "skynet_w2"), (NOTRACE, "skynet_w2")), None, "lower"),
    ("skynet (2 threads), trace on vs off", "total ms", "total_ms",
     ((RUNTIME, "skynet_w2_traced"), (RUNTIME, "skynet_w2")), None, "lower"),
    ("skynet (2 threads), trace on vs off", "CPU ms", "cpu_ms",
     ((RUNTIME, "skynet_w2_traced"), (RUNTIME, "skynet_w2")), None, "lower"),
    ("cross_thread_pingpong (2 threads)", "us per round trip", "us_per_round_trip", "cross_thread_pingpong_w2",
     (PEER, "cross_thread_pingpong_floor", "us_per_round_trip"), "lower"),
    # The same spindle figure against Boost.Fiber with work_stealing(2, suspend=true),
    # whose idle threads sleep instead of spinning.
    ("cross_thread_pingpong, peer suspending", "us per round trip", "us_per_round_trip",
     ("cross_thread_pingpong_w2", "cross_thread_pingpong_suspend_w2"),
     (PEER, "cross_thread_pingpong_floor", "us_per_round_trip"), "lower"),
    ("timers: 100k sleepers (2 threads)", "total ms", "total_ms",
     (("bench_timers", "timers_w2"), ("peer_fiber_timers", "timers_w2")), 100, "lower"),
    ("timers: 100k sleepers (2 threads)", "peak RSS MiB", "peak_rss_mb",
     (("bench_timers", "timers_w2"), ("peer_fiber_timers", "timers_w2")), None, "lower"),
    # The same spindle figure against raw Boost.Context with no scheduler (each sleeper
    # on its own stack): what this machine allows a stackful runtime at best.
    ("timers: 100k sleepers, peer bare Boost.Context", "total ms", "total_ms",
     (("bench_timers", "timers_w2"), ("peer_fiber_timers", "timers_floor_w2")), 100, "lower"),
    # CPU time (all threads) and page faults over the same run: steadier than wall time
    # on a shared machine. Each sleeper's stack page first touched is one fault.
    ("timers: 100k sleepers, peer bare Boost.Context", "CPU ms", "cpu_ms",
     (("bench_timers", "timers_w2"), ("peer_fiber_timers", "timers_floor_w2")), None, "lower"),
    ("timers: 100k sleepers, peer bare Boost.Context", "page faults", "page_faults",
     (("bench_timers", "timers_w2"), ("peer_fiber_timers", "timers_floor_w2")), None, "lower"),
    ("timers: insert + cancel", "ns per timer", "ns_per_timer",
     (("bench_timers", "timer_cancel_w2"), ("peer_fiber_timers", "timer_cancel_w2")), None, "lower"),
    ("wait_for on a finished task", "ns per wait_for", "ns_per_wait_for",
     (("bench_timers", "wait_for_w2"), ("peer_fiber_timers", "wait_for_w2")), None, "lower"),
    ("mpsc: 4 producers, 1 consumer (2 threads)", "M msgs per s", "M_msgs_per_s",
     (("bench_sync", "mpsc_w2"), ("peer_fiber_sync", "mpsc_w2")), None, "higher"),
    ("Lock, uncontended", "ns per lock+unlock", "ns_per_lock_unlock",
     (("bench_sync", "lock_uncontended_w2"), ("peer_fiber_sync", "lock_uncontended_w2")), None, "lower"),
    ("Lock, 4 tasks contending (2 threads)", "ns per lock+unlock", "ns_per_lock_unlock",
     (("bench_sync", "lock_contended_w2"), ("peer_fiber_sync", "lock_contended_w2")), None, "lower"),
    ("Event wake-up across threads", "us per wake-up", "us_per_wakeup",
     (("bench_sync", "event_latency_w2"), ("peer_fiber_sync", "event_latency_w2")), None, "lower"),
    ("idle_memory: 100k tasks waiting (2 threads)", "bytes per task", "bytes_per_task",
     (("bench_sync", "idle_memory_w2"), ("peer_fiber_sync", "idle_memory_w2")), None, "lower"),
    ("to_thread round trip, peer std::async", "ns per call", "ns_per_call",
     (("bench_executors", "to_thread_latency"), ("peer_executors", "to_thread_latency")), None, "lower"),
    ("to_thread round trip, peer asio::thread_pool", "ns per call", "ns_per_call",
     (("bench_executors", "to_thread_latency"), ("peer_executors", "to_thread_latency_asio")), None, "lower"),
    ("to_thread, 16 callers, peer std::async", "calls per s", "calls_per_s",
     (("bench_executors", "to_thread_throughput"), ("peer_executors", "to_thread_throughput")), None, "higher"),
    ("to_thread, 16 callers, peer asio::thread_pool", "calls per s", "calls_per_s",
     (("bench_executors", "to_thread_throughput"), ("peer_executors", "to_thread_throughput_asio")), None, "higher"),
    # No peer: the floor is a raw socketpair round trip to a forked child.
    ("ProcessPool call, empty function", "us per call", "us_per_call",
     (("bench_executors", "process_call_empty"), ("peer_executors", "none")),
     ("peer_executors", "process_call_empty", "us_per_call"), "lower"),
    ("ProcessPool call, 1 MiB argument", "us per call", "us_per_call",
     (("bench_executors", "process_call_1mib"), ("peer_executors", "none")),
     ("peer_executors", "process_call_1mib", "us_per_call"), "lower"),
]

ROWS += [(f"idle: {n} workers, no work, 5 s", "CPU % of one CPU", "cpu_percent",
          ((RUNTIME, f"idle_w{n}"), (RUNTIME, "none")), 1, "lower") for n in IDLE_WORKERS]


# Fields of a Google Benchmark JSON entry that are not our user counters.
NOT_COUNTERS = {"family_index", "per_family_instance_index", "repetitions", "repetition_index",
                "threads", "iterations", "real_time", "cpu_time"}


def run_one(binary_path, name, reps):
    """Runs one workload in its own process; returns (counters: {name: [values]}, error or None)."""
    if not binary_path.exists():
        return {}, f"{binary_path} not found (build it first)"
    cmd = [str(binary_path), f"--benchmark_filter=^{name}(/|$)", "--benchmark_format=json",
           f"--benchmark_repetitions={reps}"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {}, f"timed out after {TIMEOUT_S} s"
    return parse_output(p.returncode, p.stdout, p.stderr)


def parse_output(returncode, stdout, stderr):
    """A benchmark process's exit status and Google Benchmark JSON output, read into
    (counters: {name: [values, one per repetition]}, error or None)."""
    tail = " | ".join(stderr.strip().splitlines()[-3:])
    if returncode != 0:
        return {}, f"exit status {returncode}: {tail}"
    if not stdout.strip():
        return {}, f"no output: {tail}"
    try:
        entries = json.loads(stdout)["benchmarks"]
    except (ValueError, KeyError) as e:
        return {}, f"unreadable output ({e})"
    counters, errors = {}, []
    for e in entries:
        if e.get("run_type", "iteration") != "iteration":
            continue  # Google Benchmark's own aggregates: we take our own medians
        if e.get("error_occurred"):
            errors.append(e.get("error_message", "error"))
            continue
        for key, value in e.items():
            if key not in NOT_COUNTERS and isinstance(value, (int, float)) and not isinstance(value, bool):
                counters.setdefault(key, []).append(value)
    if errors:
        return counters, "; ".join(sorted(set(errors)))
    if not counters:
        return {}, "no benchmark matched"
    return counters, None


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if 0 < abs(v) < 0.1:
        return f"{v:.2g}"  # e.g. an idle runtime's CPU %: two significant digits, not 0.00
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def print_table(header, lines):
    """Prints rows of strings in aligned columns: the first two left, the rest right."""
    widths = [max([len(h)] + [len(l[i]) for l in lines]) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for l in lines:
        print(" | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(l, widths))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build" / "release"), help="meson build directory")
    ap.add_argument("--only", metavar="REGEX", help="run only the workloads whose key matches REGEX")
    args = ap.parse_args()
    build = Path(args.build).resolve()
    quick = os.environ.get("QUICK", "") not in ("", "0")
    reps = 1 if quick else 3
    import bench_contended
    contended_reps = bench_contended.QUICK_REPS if quick else bench_contended.REPS

    results = {}
    for binary, name in RUNS:
        key = f"{binary}/{name}"
        if args.only and not re.search(args.only, key):
            continue
        print(f"bench: {key} x{reps} ...", end="", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        counters, error = run_one(build / "benchmarks" / binary, name, reps)
        print(f" {time.monotonic() - t0:.1f} s" + (f"  FAILED: {error}" if error else ""), file=sys.stderr)
        results[key] = {"values": counters, "error": error,
                        "median": {k: statistics.median(v) for k, v in counters.items()}}

    def figure(binary, name, counter):
        r = results.get(f"{binary}/{name}")
        if r is None:
            return None  # not run
        return "FAIL" if r["error"] else r["median"].get(counter)

    table = []
    for workload, label, counter, name, floor, better in ROWS:
        s_name, p_name = name if isinstance(name, tuple) else (name, name)
        s_ref = s_name if isinstance(s_name, tuple) else (RUNTIME, s_name)
        p_ref = p_name if isinstance(p_name, tuple) else (PEER, p_name)
        s, p = figure(*s_ref, counter), figure(*p_ref, counter)
        f = figure(*floor) if isinstance(floor, tuple) else floor
        ratio = s / p if isinstance(s, (int, float)) and isinstance(p, (int, float)) and p else None
        table.append({"workload": workload, "figure": label, "spindle": s, "peer": p, "floor": f,
                      "ratio": ratio, "better": better})

    # The network workloads (scripts/bench_net.py): spindle's servers beside the same
    # servers on Boost.Asio, loaded by wrk and a spindle echo client; the peer is Asio.
    import bench_net
    net_results, net_rows = bench_net.run(build, reps, only=args.only)
    results.update(net_results)
    table += net_rows

    # The contended rows: some workloads again beside busy loops (scripts/bench_contended.py).
    contended_results, contended_rows = bench_contended.run(build, contended_reps, only=args.only)
    results.update(contended_results)
    table += contended_rows
    if args.only:
        table = [r for r in table if r["spindle"] is not None or r["peer"] is not None]

    header = ["workload", "figure", "spindle", "peer", "floor", "spindle/peer", "better"]
    lines = [[r["workload"], r["figure"], fmt(r["spindle"]), fmt(r["peer"]), fmt(r["floor"]),
              "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", r["better"]] for r in table]
    more_reps = bench_net.MORE_REPS if reps > 1 else reps
    print(f"medians of {reps} run(s) each (paced and Asio HTTP rows: of {more_reps}; contended rows: median and "
          f"worst of {contended_reps}); "
          "spindle/peer below 1 is better where lower is better; the peer is Boost.Fiber unless the workload "
          "names another")
    print_table(header, lines)

    failed = {k: r["error"] for k, r in results.items() if r["error"]}
    # A partial run (--only) goes to only.json and leaves the full run's report alone.
    out = ROOT / "bench-results" / ("only.json" if args.only else "latest.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "build": str(build), "repetitions": reps, "contended_repetitions": contended_reps,
        "more_repetitions": more_reps, "more_repetitions_of": list(bench_net.MORE_REPS_OF),
        "only": args.only, "runs": results, "table": table, "failed": failed,
    }, indent=2) + "\n")
    print(f"raw figures: {out.relative_to(ROOT)}")
    # The report (scripts/bench_report.py): a timestamped copy of the figures and the
    # chart, bench-results/latest.png. `scripts/bench_report.py --readme` puts the table
    # in README.md.
    report_status = 0
    if not args.only:
        import bench_report
        report_status = bench_report.publish(out)
    for k, e in failed.items():
        print(f"FAILED {k}: {e}", file=sys.stderr)
    return 1 if failed or report_status else 0


if __name__ == "__main__":
    sys.exit(main())
