#!/usr/bin/env python3
"""The network workloads (http_plaintext, echo and kv): spindle's example
servers beside the same servers written with Boost.Asio, with the same thread counts,
in the same run.

  http_plaintext: examples/http_server and benchmarks/peer_asio_http with 1 and 2
      threads, each loaded by `wrk -t1 -c64 -d5s --latency http://127.0.0.1:PORT/plaintext`.
  echo: examples/echo_server and benchmarks/peer_asio_echo with 1 and 2 threads, each
      loaded by benchmarks/echo_client (spindle, 1 worker): 64 connections ping-ponging
      64-byte messages for 5 s.
  http_plaintext, metrics off: examples/http_server beside benchmarks/http_server_nometrics
      (the same program, its library built with metrics compiled out), loaded as above:
      the cost of metrics.
  http_plaintext, trace off vs compiled out: examples/http_server beside
      benchmarks/http_server_notrace (its library built with the execution trace's hooks
      compiled out), 1 thread, loaded as above: the cost of tracing while it is off.
  http_plaintext, trace on vs off: examples/http_server --trace=FILE (a temporary file,
      removed after) beside examples/http_server, 1 thread: the cost of tracing while on
      (the trace's writer thread is part of the server's CPU time).
  http_plaintext, paced: examples/http_server and benchmarks/peer_asio_http with 1 and 2
      threads at a light load that does not depend on the server: benchmarks/paced_client
      sends 2,000 requests per second over 16 keep-alive connections for 5 s. The
      figure is the server's CPU time per request; the achieved rate and the p99
      latency (from each request's due time) beside it.
  kv: examples/kv_server with 1 worker beside Debian's redis-server (one
      thread, nothing saved to disk), each loaded by `redis-benchmark -q -t set,get`
      (50 connections) unpipelined (-P 1) and with 16 requests in flight per
      connection (-P 16).

Each server runs in its own process on a free loopback port; the load starts once it
accepts and has answered a correctness check (two pipelined requests, split across two
writes, must get exactly two responses; an echo must come back unchanged). The server's
user+sys CPU time (all its threads) is read from its CPU-time clock (nanoseconds; see
cpu_seconds) just before and just after the load: on a 2-core machine the load generator
shares the CPUs with the server, so requests per second of server CPU time is the fair
figure. Spindle and its peer alternate within each repetition (who goes first alternates
too). Every figure is the median of R repetitions (QUICK=1 in the environment: R=1,
otherwise 3), except the workloads in MORE_REPS, whose figures are the median of 5: a
paced run's server CPU per request moves by 10-30% from run to run on the shared 2-core
machine, for both servers alike, while its measurement error is nanoseconds on ~0.1 s;
and http_plaintext against Asio (the rows that compare the runtimes) moves by up to 20%
in one repetition of the pair (152,605 against 181,076 in a run whose other six
spindle-server readings were 165-186k).

Usage: scripts/bench_net.py [--build DIR] [--only REGEX]   (default DIR: build/release)
Writes the raw figures to bench-results/net.json and prints the rows; scripts/bench.py
imports run() and adds the same rows to its table. Exit status 1 if anything failed.
"""
import argparse
import datetime
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOAD_SECONDS = 5
CONNECTIONS = 64
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")

# Two responses, each with Server and Date (both servers send them, RFC 9110).
RESPONSE_RE = re.compile(rb"(?:HTTP/1\.1 200 OK\r\nServer: [^\r\n]*\r\nDate: [^\r\n]*\r\nContent-Length: 13\r\n"
                         rb"Content-Type: text/plain\r\n\r\nHello, World!){2}")
REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

# (workload key, label, spindle server, peer server); servers are paths under the build
# directory, run as `SERVER PORT THREADS 127.0.0.1`.
HTTP = ("http", "examples/http_server", "benchmarks/peer_asio_http")
ECHO = ("echo", "examples/echo_server", "benchmarks/peer_asio_echo")
HTTP_METRICS = ("http_metrics", "examples/http_server", "benchmarks/http_server_nometrics")
# The execution trace's cost: off against compiled out, and on against off. TRACED marks a
# server run with --trace=FILE (a temporary file, removed after the run).
TRACED = " --trace"
HTTP_TRACE_OFF = ("http_trace_off", "examples/http_server", "benchmarks/http_server_notrace")
HTTP_TRACE_ON = ("http_trace_on", "examples/http_server" + TRACED, "examples/http_server")
# REDIS is not a path under the build directory: run_one starts the installed redis-server.
REDIS = "redis-server"
KV_P1 = ("kv_p1", "examples/kv_server", REDIS)
KV_P16 = ("kv_p16", "examples/kv_server", REDIS)
WORKLOADS = (HTTP, ECHO, HTTP_METRICS, HTTP_TRACE_OFF, HTTP_TRACE_ON, KV_P1, KV_P16)
# The light load: a fixed request rate (benchmarks/paced_client) instead of wrk's
# as-fast-as-answered; server CPU per request at that pace.
HTTP_PACED = ("http_paced", "examples/http_server", "benchmarks/peer_asio_http")
WORKLOADS += (HTTP_PACED,)
PACED_CLIENT = "benchmarks/paced_client"
PACED_RATE, PACED_CONNECTIONS = 2000, 16
# Repetitions, in a full run, of the workloads whose figures scatter most (see the top).
MORE_REPS, MORE_REPS_OF = 5, ("http", "http_paced")
# Each workload's load ("http", "echo" or "kv"), and its peer: (results key, table title).
LOAD = {"http": "http", "echo": "echo", "http_metrics": "http", "kv_p1": "kv", "kv_p16": "kv"}
PEERS = {"http": ("asio", "Asio"), "echo": ("asio", "Asio"), "http_metrics": ("metrics_off", "metrics off"),
         "kv_p1": ("redis", "redis-server"), "kv_p16": ("redis", "redis-server")}
LOAD["http_paced"], PEERS["http_paced"] = "paced", ("asio", "Asio")
LOAD["http_trace_off"], PEERS["http_trace_off"] = "http", ("trace_compiled_out", "trace compiled out")
LOAD["http_trace_on"], PEERS["http_trace_on"] = "http", ("trace_off", "trace off")
CLIENT = "benchmarks/echo_client"
THREADS = (1, 2)
# redis-server runs its commands on one thread: the kv rows compare 1 worker with it.
WORKLOAD_THREADS = {"kv_p1": (1,), "kv_p16": (1,), "http_trace_off": (1,), "http_trace_on": (1,)}
# The kv loads: requests in flight per connection (-P), and requests per redis-benchmark
# test (-n; SET then GET). redis-benchmark (one thread) is the bottleneck, not the
# server: measured 25-30k requests/s at -P 1 and 300-550k at -P 16 on the 2-core machine
# under other load, so each test takes about 4 to 8 s.
PIPELINE = {"kv_p1": 1, "kv_p16": 16}
KV_REQUESTS = {"kv_p1": 200_000, "kv_p16": 2_000_000}

# The rows: (workload kind, figure label, counter, better).
FIGURES = {
    "http": [("requests/s", "requests_per_s", "higher"),
             ("requests per server CPU-s", "requests_per_cpu_s", "higher"),
             ("p99 latency ms", "p99_ms", "lower"),
             ("server CPU %", "cpu_percent", "-")],
    "echo": [("messages/s", "messages_per_s", "higher"),
             ("messages per server CPU-s", "messages_per_cpu_s", "higher"),
             ("server CPU %", "cpu_percent", "-")],
    "http_metrics": [("requests per server CPU-s", "requests_per_cpu_s", "higher")],
    "kv_p1": [("requests/s", "requests_per_s", "higher"),
              ("requests per server CPU-s", "requests_per_cpu_s", "higher"),
              ("server CPU %", "cpu_percent", "-")],
}
FIGURES["kv_p16"] = FIGURES["kv_p1"]
FIGURES["http_trace_off"] = [("requests per server CPU-s", "requests_per_cpu_s", "higher"),
                             ("requests/s", "requests_per_s", "higher")]
FIGURES["http_trace_on"] = FIGURES["http_trace_off"]
FIGURES["http_paced"] = [("server CPU us per request", "server_us_per_request", "lower"),
                         ("requests/s achieved", "requests_per_s", "-"),
                         ("p99 latency ms", "p99_ms", "lower")]
TITLES = {"http": "http_plaintext", "echo": "echo (64 conns, 64 B)", "http_metrics": "http_plaintext",
          "kv_p1": "kv SET+GET -P 1 (50 conns)", "kv_p16": "kv SET+GET -P 16 (50 conns)"}
TITLES["http_trace_off"] = "http_plaintext, trace off"
TITLES["http_trace_on"] = "http_plaintext, trace on"
TITLES["http_paced"] = f"http_plaintext paced, {PACED_RATE:,} req/s over {PACED_CONNECTIONS} conns"


class Failed(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU time of process pid (all its threads, ended ones included), in
    seconds: from the process's CPU-time clock (nanoseconds; Linux's clock id for another
    process is ((~pid) << 3) | CPUCLOCK_SCHED, what clock_getcpuclockid returns), else from
    /proc/PID/stat in clock ticks (10 ms, too coarse for the light-load rows, where the
    server spends a fraction of a second in all)."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after "(comm)": field 3 is fields[0]
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def wait_accepting(proc, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failed(f"server exited with status {proc.returncode} before accepting")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failed(f"server did not accept on port {port} within {timeout:.0f} s")


def recv_exactly(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def check_http(port):
    """Two pipelined requests, the second split across writes: exactly two responses.
    Both servers send Server and Date (RFC 9110)."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(REQUEST + REQUEST[:10])
        time.sleep(0.02)
        s.sendall(REQUEST[10:])
        got = b""
        s.settimeout(0.2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                if RESPONSE_RE.fullmatch(got):
                    break
                continue
            if not chunk:
                break
            got += chunk
    if not RESPONSE_RE.fullmatch(got):
        raise Failed(f"wrong response bytes: {got[:300]!r}")


def check_echo(port):
    msg = bytes(range(64))
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(msg)
        if recv_exactly(s, len(msg)) != msg:
            raise Failed("the echo differs from the message")


def check_kv(port):
    """PING, then a SET split across two writes, then a GET: the three replies exactly."""
    set_req = b"*3\r\n$3\r\nSET\r\n$5\r\nbench\r\n$2\r\nok\r\n"
    want = b"+PONG\r\n+OK\r\n$2\r\nok\r\n"
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n" + set_req[:9])
        time.sleep(0.02)
        s.sendall(set_req[9:] + b"*2\r\n$3\r\nGET\r\n$5\r\nbench\r\n")
        got = recv_exactly(s, len(want))
    if got != want:
        raise Failed(f"wrong replies: {got[:200]!r}")


def load_kv(port, kind):
    n = KV_REQUESTS[kind]
    cmd = ["redis-benchmark", "-h", HOST, "-p", str(port), "-n", str(n), "-P", str(PIPELINE[kind]), "-q",
           "-t", "set,get"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    secs = time.monotonic() - t0
    figures = dict(re.findall(r"(SET|GET): ([\d.]+) requests per second", p.stdout))
    if p.returncode != 0 or set(figures) != {"SET", "GET"}:
        raise Failed(f"redis-benchmark exit status {p.returncode}: {(p.stdout + p.stderr).strip()[-200:]!r}")
    return {"requests": 2 * n, "requests_per_s": 2 * n / secs,
            "set_per_s": float(figures["SET"]), "get_per_s": float(figures["GET"])}


def parse_duration_ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    if not m:
        raise Failed(f"unreadable wrk latency '{v}'")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def load_http(port):
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{LOAD_SECONDS}s", "--latency", f"http://{HOST}:{port}/plaintext"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=LOAD_SECONDS + 60)
    out = p.stdout
    if p.returncode != 0:
        raise Failed(f"wrk exit status {p.returncode}: {p.stderr.strip()[-200:]}")
    if "Non-2xx or 3xx responses" in out:
        raise Failed("wrk saw non-2xx responses")
    m_total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    m_rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    m_p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (m_total and m_rps and m_p99):
        raise Failed(f"unreadable wrk output: {out[-300:]!r}")
    m_err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m_err and int(m_err.group(1)):
        raise Failed(f"wrk could not connect: {m_err.group(0)}")
    return {"requests": int(m_total.group(1)), "requests_per_s": float(m_rps.group(1)),
            "p99_ms": parse_duration_ms(m_p99.group(1))}


def load_echo(build, port):
    cmd = [str(build / CLIENT), str(port), str(LOAD_SECONDS), str(CONNECTIONS), "1", HOST]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=LOAD_SECONDS + 60)
    if p.returncode != 0:
        raise Failed(f"echo_client exit status {p.returncode}: {p.stderr.strip()[-200:]}")
    try:
        r = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Failed(f"unreadable echo_client output: {p.stdout[-200:]!r}")
    return {"messages": r["messages"], "messages_per_s": r["messages_per_s"]}


def load_paced(build, port):
    """benchmarks/paced_client at PACED_RATE for LOAD_SECONDS: its JSON figures."""
    path = build / PACED_CLIENT
    if not path.exists():
        raise Failed(f"{path} not found (build it first)")
    cmd = [str(path), str(port), str(PACED_RATE), str(LOAD_SECONDS), str(PACED_CONNECTIONS), HOST]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=LOAD_SECONDS + 60)
    if p.returncode != 0:
        raise Failed(f"paced_client exit status {p.returncode}: {p.stderr.strip()[-200:]}")
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Failed(f"unreadable paced_client output: {p.stdout[-200:]!r}")


def server_command(build, server, port, threads):
    if server == REDIS:
        # One thread for commands (redis's default), nothing written to disk, loopback only.
        return [REDIS, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", tempfile.gettempdir(), "--logfile", ""]
    traced = server.endswith(TRACED)
    path = build / server.removesuffix(TRACED)
    if not path.exists():
        raise Failed(f"{path} not found (build it first)")
    cmd = [str(path), str(port), str(threads), HOST]
    if traced:
        cmd.append(f"--trace={trace_file(port)}")
    return cmd


def trace_file(port):
    """Where a traced server (TRACED) writes its trace: removed after its run."""
    return os.path.join(tempfile.gettempdir(), f"spindle_bench_trace_{os.getpid()}_{port}.json")


def run_one(build, kind, server, threads):
    """One server, one load run. Returns {counter: value}; raises Failed."""
    workload, kind = kind, LOAD[kind]
    for tool, needed in (("wrk", kind == "http"), ("redis-benchmark", kind == "kv"), (REDIS, server == REDIS)):
        if needed and subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            raise Failed(f"{tool} not found (scripts/install-deps.sh bench installs it)")
    port = free_port()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(server_command(build, server, port, threads), stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_accepting(proc, port)
            {"http": check_http, "paced": check_http, "echo": check_echo, "kv": check_kv}[kind](port)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            if kind == "http":
                r = load_http(port)
            elif kind == "kv":
                r = load_kv(port, workload)
            elif kind == "paced":
                r = load_paced(build, port)
            else:
                r = load_echo(build, port)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            if proc.poll() is not None:
                raise Failed(f"server exited with status {proc.returncode} during the load")
        except Failed as e:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-2:]
            raise Failed(str(e) + (f" (server: {' | '.join(tail)})" if tail else ""))
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    # A traced server writes its trace's JSON as it stops.
                    proc.wait(timeout=120 if server.endswith(TRACED) else 5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if server.endswith(TRACED):
                try:
                    os.remove(trace_file(port))
                except OSError:
                    pass
    cpu = max(c1 - c0, 1.0 / TICKS)
    r["server_cpu_s"] = c1 - c0
    r["cpu_percent"] = 100.0 * (c1 - c0) / (t1 - t0)
    if kind in ("http", "kv"):
        r["requests_per_cpu_s"] = r["requests"] / cpu
    elif kind == "echo":
        r["messages_per_cpu_s"] = r["messages"] / cpu
    if kind == "paced":
        r["server_us_per_request"] = 1e6 * (c1 - c0) / r["requests"]
    return r


def run(build, reps, log=sys.stderr, only=None):
    """Runs every network workload reps times (only those whose "net/<workload>_w<threads>"
    matches the regex `only`, if given). Returns (results, rows): results maps
    "net/<workload>_w<threads>/<spindle|asio|metrics_off>" to {"values", "error", "median"}
    as bench.py's runs do; rows are bench.py table rows (spindle beside its peer)."""
    build = Path(build)
    configs = [(kind, spindle_srv, peer_srv, t) for kind, spindle_srv, peer_srv in WORKLOADS
               for t in WORKLOAD_THREADS.get(kind, THREADS)]
    configs = [c for c in configs if only is None or re.search(only, f"net/{c[0]}_w{c[3]}")]
    results = {}

    def key(kind, t, who):
        return f"net/{kind}_w{t}/{who}"

    def reps_of(kind):
        return MORE_REPS if kind in MORE_REPS_OF and reps > 1 else reps

    for rep in range(max([reps] + [reps_of(c[0]) for c in configs])):
        for kind, spindle_srv, peer_srv, t in configs:
            if rep >= reps_of(kind):
                continue
            order = [("spindle", spindle_srv), (PEERS[kind][0], peer_srv)]
            if rep % 2:
                order.reverse()  # alternate who goes first
            for who, srv in order:
                k = key(kind, t, who)
                r = results.setdefault(k, {"values": {}, "error": None, "median": {}})
                if r["error"]:
                    continue
                print(f"bench: {k} rep {rep + 1}/{reps_of(kind)} ...", end="", file=log, flush=True)
                try:
                    figures = run_one(build, kind, srv, t)
                except (Failed, subprocess.TimeoutExpired, OSError) as e:
                    r["error"] = str(e)
                    print(f" FAILED: {e}", file=log)
                    continue
                for name, v in figures.items():
                    r["values"].setdefault(name, []).append(v)
                main = figures.get("requests_per_s", figures.get("messages_per_s"))
                p99 = f", p99 {figures['p99_ms']:.2f} ms" if "p99_ms" in figures else ""
                print(f" {main:.0f}/s, {figures['cpu_percent']:.0f}% CPU{p99}", file=log)
    for r in results.values():
        r["median"] = {n: statistics.median(v) for n, v in r["values"].items()}

    def figure(k, counter):
        r = results.get(k)
        if r is None:
            return None
        return "FAIL" if r["error"] else r["median"].get(counter)

    rows = []
    for kind, _, _, t in configs:
        for label, counter, better in FIGURES[kind]:
            s, p = figure(key(kind, t, "spindle"), counter), figure(key(kind, t, PEERS[kind][0]), counter)
            ratio = s / p if isinstance(s, (int, float)) and isinstance(p, (int, float)) and p else None
            rows.append({"workload": f"{TITLES[kind]} ({t} thread{'s' if t > 1 else ''}) vs {PEERS[kind][1]}",
                         "figure": label, "spindle": s, "peer": p, "floor": None, "ratio": ratio,
                         "better": better})
    return results, rows


def main():
    from bench import fmt, print_table  # the table format bench.py prints

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build" / "release"), help="meson build directory")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "net.json"), help="where the raw figures go")
    ap.add_argument("--only", metavar="REGEX", help="run only the workloads whose net/<workload>_w<threads> matches")
    args = ap.parse_args()
    build = Path(args.build).resolve()
    reps = 1 if os.environ.get("QUICK", "") not in ("", "0") else 3
    results, rows = run(build, reps, only=args.only)

    header = ["workload", "figure", "spindle", "peer (as named)", "spindle/peer", "better"]
    lines = [[r["workload"], r["figure"], fmt(r["spindle"]), fmt(r["peer"]),
              "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", r["better"]] for r in rows]
    print(f"medians of {reps} run(s) each (paced and Asio HTTP rows: {MORE_REPS if reps > 1 else reps}); load and servers share this machine's CPUs")
    print_table(header, lines)

    failed = {k: r["error"] for k, r in results.items() if r["error"]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "build": str(build), "repetitions": reps, "runs": results, "table": rows, "failed": failed,
    }, indent=2) + "\n")
    print(f"raw figures: {out}")
    for k, e in failed.items():
        print(f"FAILED {k}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
