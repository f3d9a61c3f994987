#!/usr/bin/env python3
"""Hostile clients against the HTTP example (examples/http_server.cpp), on loopback.

Starts the server on 127.0.0.1 (a free port, short header and idle timeouts given on its
command line), and while a well-behaved keep-alive client checks every response it
gets, runs in turn:
  1. slowloris: connections that send a request head one byte at a time, slower than
     the header timeout allows, must each get 408 and be closed; connections that send
     nothing must be closed by the idle timeout;
  2. churn: CONNECTIONS connections opened and dropped in batches (half closed, half
     reset), after which the server holds no more sockets than before;
  3. a 10 MiB header field and a 10 MiB request line: cut off with 431 and 414, then closed;
  4. pipelined garbage: valid requests followed by garbage get their 200s, then one 400,
     then the close; an unknown transfer coding gets 501;
and at the end requires that the well-behaved client got only correct responses and
made progress during every phase, that the server is still running, and that its peak
RSS (VmHWM in /proc/PID/status) stayed under --rss-limit-mib.

Bounded in count and time; every wait has a deadline, so a broken server fails the run
rather than hanging it. Exit status 0 when every check held. The last line is
"N passed, M failed".
"""
import argparse
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

from checks import check, checks, proc_status, stop, summary

# Every response carries Date (IMF-fixdate, always 29 bytes), so responses have a fixed
# length but not fixed bytes: OK_RESPONSE has the length, is_ok() checks the bytes.
OK_RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: spindle\r\nDate: Mon, 07 Dec 2026 00:00:00 GMT\r\n"
               b"Content-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!")
OK_RE = re.compile(rb"HTTP/1\.1 200 OK\r\nServer: spindle\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
                   rb"\d\d:\d\d:\d\d GMT\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!")


def is_ok(data, count):
    """data is exactly `count` 200 responses."""
    return re.fullmatch(b"(?:" + OK_RE.pattern + b"){" + str(count).encode() + b"}", data) is not None
GOOD_REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s, deadline, limit=1 << 20):
    """Reads until EOF or a reset, at most `limit` bytes, before `deadline`.
    Returns (data, how) with how in 'eof', 'reset', 'timeout', 'limit'."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, "timeout"
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk
        if len(data) > limit:
            return data, "limit"


class GoodClient(threading.Thread):
    """Keep-alive connections sending 1-4 pipelined requests at a time and checking
    each response byte for byte. Counts the responses; any wrong byte, close or
    stall is an error. Opens a new connection every 200 requests."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        s = None
        sent_on_conn = 0
        depth = 0
        while not self.stop.is_set() and len(self.errors) < 5:
            try:
                if s is None or sent_on_conn >= 200:
                    if s is not None:
                        s.close()
                    s = connect(self.port)
                    sent_on_conn = 0
                depth = depth % 4 + 1
                s.sendall(GOOD_REQUEST * depth)
                want = OK_RESPONSE * depth
                got = b""
                s.settimeout(10.0)
                while len(got) < len(want):
                    chunk = s.recv(len(want) - len(got))
                    if not chunk:
                        raise ConnectionError("closed by the server")
                    got += chunk
                if not is_ok(got, depth):
                    raise ValueError(f"wrong response: {got[:80]!r}")
                self.ok += depth
                sent_on_conn += depth
                time.sleep(0.002)  # well-behaved, not a load generator
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                self.errors.append(f"{type(e).__name__}: {e}")
                if s is not None:
                    s.close()
                s = None
        if s is not None:
            s.close()


def phase_slowloris(port, args):
    n = args.slow_connections
    head = b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 64 + b"\r\n\r\n"
    sel = selectors.DefaultSelector()
    slow = []
    for _ in range(n):
        s = connect(port)
        s.setblocking(False)
        slow.append({"s": s, "sent": 0, "data": b"", "closed": False})
        sel.register(s, selectors.EVENT_READ, slow[-1])
    idle = [connect(port) for _ in range(n // 4 + 1)]
    start = time.monotonic()
    deadline = start + args.header_timeout + 8.0
    next_byte = start
    while time.monotonic() < deadline and not all(c["closed"] for c in slow):
        now = time.monotonic()
        if now >= next_byte:  # one byte on every open slow connection
            for c in slow:
                if not c["closed"] and c["sent"] < len(head):
                    try:
                        c["s"].send(head[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                    except OSError:
                        pass  # closed by the server: seen by the reader below
            next_byte = now + args.byte_interval
        for key, _ in sel.select(timeout=0.05):
            c = key.data
            try:
                chunk = c["s"].recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if chunk:
                c["data"] += chunk
            else:
                c["closed"] = True
                sel.unregister(c["s"])
    elapsed = time.monotonic() - start
    closed = sum(c["closed"] for c in slow)
    got_408 = sum(c["data"].startswith(b"HTTP/1.1 408 ") for c in slow)
    most_sent = max(c["sent"] for c in slow)
    check("slowloris connections closed by the header timeout", closed == n,
          f"{closed}/{n} closed in {elapsed:.1f}s, each after at most {most_sent} of {len(head)} bytes")
    check("slowloris connections answered 408", got_408 == n, f"{got_408}/{n}")
    check("slowloris never completed a head", most_sent < len(head))
    for c in slow:
        c["s"].close()
    # Idle connections (nothing sent) end by the idle timeout, silently.
    idle_deadline = start + args.idle_timeout + 8.0
    results = [read_until_closed(s, idle_deadline) for s in idle]
    idle_closed = sum(how in ("eof", "reset") and data == b"" for data, how in results)
    check("idle connections closed by the idle timeout, without a response", idle_closed == len(idle),
          f"{idle_closed}/{len(idle)}")
    for s in idle:
        s.close()


def phase_churn(port, pid, args):
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    batch = max(10, min(500, (soft - 64) // 2))
    before = open_fds(pid)
    made = 0
    start = time.monotonic()
    while made < args.connections:
        socks = []
        for _ in range(min(batch, args.connections - made)):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for i, s in enumerate(socks):
            if i % 2:  # reset rather than close
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        made += len(socks)
    elapsed = time.monotonic() - start
    deadline = time.monotonic() + 15.0
    after = open_fds(pid)
    while after > before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        after = open_fds(pid)
    check(f"{made} connections opened and dropped (batches of {batch}) leave no socket behind",
          after <= before + 2, f"server fds {before} before, {after} after; {elapsed:.1f}s")


def send_in_thread(s, payload):
    def run():
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server cut us off, as it should
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def phase_big_head(port):
    big = 10 * 1024 * 1024
    for what, payload in (
        ("a 10 MiB header field", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * big + b"\r\n\r\n"),
    ):
        s = connect(port)
        t = send_in_thread(s, payload)
        data, how = read_until_closed(s, time.monotonic() + 15.0)
        s.close()
        t.join(15.0)
        check(f"{what} is cut off with 431 and closed",
              data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n") and how in ("eof", "reset"),
              f"{data[:40]!r}, then {how}")
    s = connect(port)
    t = send_in_thread(s, b"GET /" + b"a" * big + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    data, how = read_until_closed(s, time.monotonic() + 15.0)
    s.close()
    t.join(15.0)
    check("a 10 MiB request line is cut off with 414 and closed",
          data.startswith(b"HTTP/1.1 414 URI Too Long\r\n") and how in ("eof", "reset"), f"{data[:40]!r}, then {how}")


def phase_garbage(port):
    cases = [
        ("pipelined garbage", GOOD_REQUEST * 3 + b"\x00\x01\x02 garbage\r\n\r\n" + GOOD_REQUEST * 2, 3, b"400"),
        ("a request line without a version", GOOD_REQUEST + b"GET /\r\n\r\n", 1, b"400"),
        ("a header line without a colon", b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", 0, b"400"),
        ("a bare LF line end", b"GET / HTTP/1.1\nHost: x\n\n", 0, b"400"),
        ("an unknown transfer coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
         0, b"501"),
        ("a body skipped by Content-Length",
         b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n\r\n\r\n\r\n" + GOOD_REQUEST, 2, None),
    ]
    for name, payload, oks, status in cases:
        s = connect(port)
        s.sendall(payload)
        if status is None:
            want = OK_RESPONSE * oks
            data = b""
            s.settimeout(10.0)
            while len(data) < len(want):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            check(f"{name}: {oks} responses, connection kept", is_ok(data, oks), f"{len(data)} bytes")
        else:
            data, how = read_until_closed(s, time.monotonic() + 10.0)
            n = len(OK_RESPONSE) * oks
            check(f"{name}: {oks} x 200, then {status.decode()} and the close",
                  is_ok(data[:n], oks) and data[n:].startswith(b"HTTP/1.1 " + status + b" ") and how in ("eof", "reset"),
                  f"{data[-60:]!r}, then {how}")
        s.close()
    # Many garbage connections at once, random bytes each.
    rnd = [os.urandom(200) for _ in range(50)]
    socks = [connect(port) for _ in rnd]
    for s, junk in zip(socks, rnd):
        try:
            s.sendall(b"\x00" + junk)  # NUL cannot start a request
        except OSError:
            pass
    answered = 0
    for s in socks:
        data, how = read_until_closed(s, time.monotonic() + 10.0)
        answered += data.startswith(b"HTTP/1.1 400 ") and how in ("eof", "reset")
        s.close()
    check("50 connections of random bytes each get 400 and the close", answered == len(socks),
          f"{answered}/{len(socks)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="the http_server program")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--header-timeout", type=float, default=1.0)
    ap.add_argument("--idle-timeout", type=float, default=2.0)
    ap.add_argument("--byte-interval", type=float, default=0.25,
                    help="seconds between the bytes of a slowloris connection")
    ap.add_argument("--slow-connections", type=int, default=100)
    ap.add_argument("--connections", type=int, default=10000, help="opened and dropped in phase 2")
    ap.add_argument("--rss-limit-mib", type=float, default=64.0)
    ap.add_argument("--wrk", action="store_true",
                    help="also run wrk (if installed) as a second well-behaved client and print its figures")
    args = ap.parse_args()

    server = subprocess.Popen(
        [args.server, "0", str(args.workers), "127.0.0.1",
         f"--header-timeout={args.header_timeout}", f"--idle-timeout={args.idle_timeout}"],
        stdout=subprocess.PIPE, stderr=None)
    try:
        line = server.stdout.readline().decode()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            print(f"http_hostile: the server did not start: {line!r}", file=sys.stderr)
            return 1
        port = int(m.group(1))
        print(f"server pid {server.pid} on port {port}, header timeout {args.header_timeout}s, "
              f"idle timeout {args.idle_timeout}s", flush=True)
        good = GoodClient(port)
        good.start()
        wrk = None
        if args.wrk:
            wrk = subprocess.Popen(["wrk", "-t1", "-c16", "-d60s", f"http://127.0.0.1:{port}/plaintext"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        progress = []
        t0 = time.monotonic()
        for name, run in (("slowloris", lambda: phase_slowloris(port, args)),
                          ("churn", lambda: phase_churn(port, server.pid, args)),
                          ("10 MiB heads", lambda: phase_big_head(port)),
                          ("garbage", lambda: phase_garbage(port))):
            before = good.ok
            start = time.monotonic()
            run()
            # The good client must have been served during the phase (it is never
            # starved: give it a moment after a phase that ended quickly).
            deadline = time.monotonic() + 5.0
            while good.ok == before and time.monotonic() < deadline and not good.errors:
                time.sleep(0.01)
            progress.append((name, good.ok - before, time.monotonic() - start))
        good.stop.set()
        good.join(15.0)
        wrk_out = ""
        if wrk is not None:
            wrk.send_signal(signal.SIGINT)  # wrk prints its figures on SIGINT
            wrk_out = wrk.communicate()[0].decode()
        for name, n, secs in progress:
            check(f"well-behaved client served during {name}", n > 0, f"{n} responses in {secs:.1f}s")
        check("well-behaved client saw only correct responses", not good.errors and good.ok > 0,
              f"{good.ok} correct responses; errors: {good.errors[:3]}")
        alive = server.poll() is None
        check("server still running", alive)
        if alive:
            hwm = proc_status(server.pid, "VmHWM") / 1024.0
            rss = proc_status(server.pid, "VmRSS") / 1024.0
            check(f"server peak RSS (VmHWM) under {args.rss_limit_mib:g} MiB", hwm < args.rss_limit_mib,
                  f"peak {hwm:.1f} MiB, now {rss:.1f} MiB")
        if wrk_out:
            print("wrk alongside (it is stopped early, so its figures cover the phases only):")
            print(wrk_out)
        print(f"total {time.monotonic() - t0:.1f}s")
    finally:
        stop(server)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
