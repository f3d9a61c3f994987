#!/usr/bin/env python3
"""The contended workloads: cross_thread_pingpong, skynet and http_plaintext (1 thread)
again, each with busy-loop processes running beside it, spindle and its peer alike.

A server does not run on a quiet machine. Here every run gets 4 busy loops per CPU
(os.cpu_count() * 4; 8 on a 2-CPU machine), started before the benchmark process and
killed after it:

  - a busy loop is `python3 -c "while True: pass"`, pinned to one CPU (round robin over
    the CPUs this process may run on, so each CPU has 4), at the default priority; the
    benchmark's own threads are not pinned, the kernel places them as it likes;
  - the loops are running (each has written a byte to its pipe) before the benchmark
    starts, and are killed when it ends, on error and timeout too; if this script itself
    is killed, the kernel kills them (PR_SET_PDEATHSIG).

The workloads and their peers:
  cross_thread_pingpong: bench_runtime's beside bench_peer_fiber's cross_thread_pingpong_floor
      (two plain threads bouncing a value through mutex + condition-variable mailboxes);
  skynet (2 threads): bench_runtime's beside Boost.Fiber's (bench_peer_fiber);
  http_plaintext (1 thread): examples/http_server beside benchmarks/peer_asio_http, each
      loaded by wrk as scripts/bench_net.py does (wrk shares the CPUs with the loops too).

Each repetition is its own process (for HTTP, its own server), with fresh busy loops;
spindle and the peer alternate which goes first. Besides the workload's figure, the
benchmark process's CPU time (user + sys of all its threads, from wait4) is reported;
for HTTP the server's CPU time is read from its CPU-time clock as bench_net.py does, and
reported as requests per server CPU-second. The collapse this looks for is intermittent, so the
table has the median AND the worst of R repetitions: R = 5 (QUICK=1: 3, never fewer).

Usage: scripts/bench_contended.py [--build DIR] [--only REGEX]   (default DIR: build/release)
Prints the rows and writes the raw figures to bench-results/contended.json;
scripts/bench.py imports run() and adds the same rows to its table.
"""
import argparse
import contextlib
import ctypes
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUSY_PER_CPU = 4
REPS, QUICK_REPS = 5, 3
TIMEOUT_S = 900  # per process; a collapsed ping-pong can take a minute

# Benchmark programs: (key, title, spindle (binary, benchmark), peer (binary, benchmark),
# peer title, figures). A figure is (label, counter, better); "cpu_s" is the process's
# CPU time from wait4.
PROGRAMS = [
    ("cross_thread_pingpong_w2", "cross_thread_pingpong (2 threads), contended",
     ("bench_runtime", "cross_thread_pingpong_w2"), ("bench_peer_fiber", "cross_thread_pingpong_floor"),
     "pthread cv floor",
     [("us per round trip", "us_per_round_trip", "lower"), ("process CPU s", "cpu_s", "lower")]),
    ("skynet_w2", "skynet (2 threads), contended", ("bench_runtime", "skynet_w2"), ("bench_peer_fiber", "skynet_w2"),
     "Boost.Fiber",
     [("total ms", "total_ms", "lower"), ("process CPU s", "cpu_s", "lower")]),
]
# Servers: (key, title, spindle server, peer server, threads, peer title, figures), run
# and loaded by bench_net.run_one.
SERVERS = [
    ("http_w1", "http_plaintext (1 thread), contended", "examples/http_server", "benchmarks/peer_asio_http", 1,
     "Asio",
     [("requests/s", "requests_per_s", "higher"), ("requests per server CPU-s", "requests_per_cpu_s", "higher"),
      ("p99 latency ms", "p99_ms", "lower")]),
]

PR_SET_PDEATHSIG = 1
BUSY_LOOP = "import os\nos.write(1, b'r')\nwhile True: pass\n"


def busy_count():
    return (os.cpu_count() or 1) * BUSY_PER_CPU


@contextlib.contextmanager
def busy_loops(n=None):
    """Starts n busy loops (default busy_count()), each pinned to one CPU, round robin;
    returns once every one is running; kills and reaps them all on the way out, whatever
    happened inside. Raises OSError if one cannot start."""
    n = busy_count() if n is None else n
    cpus = sorted(os.sched_getaffinity(0))
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def setup(cpu):
        def in_child():
            # Dies with this script even if it is killed outright; the check catches a
            # parent that died before the prctl.
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)
            os.sched_setaffinity(0, {cpu})
        return in_child

    procs = []
    try:
        for i in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdout=subprocess.PIPE,
                                          stdin=subprocess.DEVNULL, preexec_fn=setup(cpus[i % len(cpus)])))
        for p in procs:
            if p.stdout.read(1) != b"r":
                raise OSError(f"busy loop {p.pid} did not start (status {p.poll()})")
            p.stdout.close()
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
            if p.stdout and not p.stdout.closed:
                p.stdout.close()


def run_measured(cmd, timeout):
    """Runs cmd to its end. Returns (exit status, stdout, stderr, CPU seconds: user + sys
    of the process and every thread it had, from wait4). Kills it after `timeout` s and
    raises subprocess.TimeoutExpired."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        pid = 0
        try:
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(cmd, timeout)
                time.sleep(0.02)
        finally:
            if not pid:
                p.kill()
                os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status) if pid else -signal.SIGKILL  # reaped: Popen must not wait
        out.seek(0)
        err.seek(0)
        return (p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                ru.ru_utime + ru.ru_stime)


def run_program(build, binary, name):
    """One repetition of a benchmark program with busy loops beside it: {counter: value}
    with "cpu_s" added; raises RuntimeError."""
    from bench import parse_output  # the Google Benchmark JSON reader bench.py uses
    path = build / "benchmarks" / binary
    if not path.exists():
        raise RuntimeError(f"{path} not found (build it first)")
    cmd = [str(path), f"--benchmark_filter=^{name}(/|$)", "--benchmark_format=json", "--benchmark_repetitions=1"]
    with busy_loops():
        status, out, err, cpu = run_measured(cmd, TIMEOUT_S)
    counters, error = parse_output(status, out, err)
    if error:
        raise RuntimeError(error)
    figures = {k: v[0] for k, v in counters.items()}
    figures["cpu_s"] = cpu
    return figures


def run_server(build, server, threads):
    """One repetition of a server under wrk with busy loops beside both: bench_net's figures."""
    import bench_net
    with busy_loops():
        return bench_net.run_one(build, "http", server, threads)


def worst(values, better):
    return max(values) if better == "lower" else min(values)


def run(build, reps, only=None, log=sys.stderr):
    """Runs every contended workload `reps` times (at least QUICK_REPS). Returns
    (results, rows): results maps "contended/<key>/<spindle|peer>" to {"values", "error",
    "median", "worst"}; rows are bench.py table rows, a median and a worst row per figure."""
    import bench_net
    build = Path(build)
    reps = max(reps, QUICK_REPS)
    jobs = []  # (key, title, peer title, figures, {who: thunk})
    for key, title, s_ref, p_ref, peer_title, figures in PROGRAMS:
        jobs.append((key, title, peer_title, figures,
                     {"spindle": lambda r=s_ref: run_program(build, *r), "peer": lambda r=p_ref: run_program(build, *r)}))
    for key, title, s_srv, p_srv, threads, peer_title, figures in SERVERS:
        jobs.append((key, title, peer_title, figures,
                     {"spindle": lambda s=s_srv, t=threads: run_server(build, s, t),
                      "peer": lambda s=p_srv, t=threads: run_server(build, s, t)}))
    jobs = [j for j in jobs if only is None or re.search(only, f"contended/{j[0]}")]

    results = {}
    for rep in range(reps):
        for key, _, _, figures, thunks in jobs:
            order = ["spindle", "peer"] if rep % 2 == 0 else ["peer", "spindle"]
            for who in order:
                k = f"contended/{key}/{who}"
                r = results.setdefault(k, {"values": {}, "error": None, "median": {}, "worst": {}})
                if r["error"]:
                    continue
                print(f"bench: {k} rep {rep + 1}/{reps}, {busy_count()} busy loops ...", end="", file=log, flush=True)
                try:
                    got = thunks[who]()
                except (RuntimeError, bench_net.Failed, subprocess.TimeoutExpired, OSError) as e:
                    r["error"] = str(e)
                    print(f" FAILED: {e}", file=log)
                    continue
                for name, v in got.items():
                    r["values"].setdefault(name, []).append(v)
                print(" " + ", ".join(f"{label} {got[c]:.3g}" for label, c, _ in figures if c in got), file=log)
    for r in results.values():
        r["median"] = {n: statistics.median(v) for n, v in r["values"].items()}

    def figure(k, counter, how):
        r = results.get(k)
        if r is None:
            return None
        if r["error"]:
            return "FAIL"
        v = r["values"].get(counter)
        if not v:
            return None
        return statistics.median(v) if how == "median" else worst(v, how)

    rows = []
    for key, title, peer_title, figures, _ in jobs:
        for label, counter, better in figures:
            for how in ("median", better):
                s = figure(f"contended/{key}/spindle", counter, how)
                p = figure(f"contended/{key}/peer", counter, how)
                n = len(results.get(f"contended/{key}/spindle", {}).get("values", {}).get(counter, []))
                ratio = s / p if isinstance(s, (int, float)) and isinstance(p, (int, float)) and p else None
                rows.append({"workload": f"{title} vs {peer_title}",
                             "figure": f"{label}, {'median' if how == 'median' else 'worst'} of {n or reps}",
                             "spindle": s, "peer": p, "floor": None, "ratio": ratio, "better": better})
        for who in ("spindle", "peer"):
            r = results.get(f"contended/{key}/{who}")
            if r and not r["error"]:
                r["worst"] = {c: worst(r["values"][c], b) for _, c, b in figures if c in r["values"]}
    return results, rows


def main():
    from bench import fmt, print_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build" / "release"), help="meson build directory")
    ap.add_argument("--only", help="run only the workloads whose key (contended/<name>) matches this regex")
    args = ap.parse_args()
    quick = os.environ.get("QUICK", "") not in ("", "0")
    results, rows = run(Path(args.build).resolve(), QUICK_REPS if quick else REPS, args.only)
    header = ["workload", "figure", "spindle", "peer (as named)", "spindle/peer", "better"]
    print_table(header, [[r["workload"], r["figure"], fmt(r["spindle"]), fmt(r["peer"]),
                          "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", r["better"]] for r in rows])
    failed = {k: r["error"] for k, r in results.items() if r["error"]}
    out = ROOT / "bench-results" / "contended.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "build": args.build, "busy_loops": busy_count(), "runs": results, "table": rows, "failed": failed,
    }, indent=2) + "\n")
    print(f"raw figures: {out.relative_to(ROOT)}")
    for k, e in failed.items():
        print(f"FAILED {k}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
