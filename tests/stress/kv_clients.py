#!/usr/bin/env python3
"""Redis clients against the key-value example (examples/kv_server.cpp), on loopback.

Starts the server on 127.0.0.1 (a free port, 2 workers) and runs in turn:
  1. a scripted session through Debian's redis-cli, one connection per command (so the
     commands land on either worker: the keyspace is shared), each reply checked: PING,
     ECHO, SET/GET, SET EX then TTL, SET PX then expiry, DEL and EXISTS counts, INCR on a
     number and on a non-number, MSET/MGET, EXPIRE, TTL -1/-2, wrong arity, an unknown
     command;
  2. pipelining: many requests in one write on a raw socket, every reply checked in
     order; then `redis-cli --pipe`;
  3. concurrent INCRs of one key from several connections: none lost;
  4. malformed requests on raw sockets: a "-ERR Protocol error" reply, then the close;
  5. a 100 MB bulk string header followed by some of its bytes: an error reply and the
     close, while another client's PING is still answered; a 1 MiB value round-trips;
  6. `redis-benchmark -P 16 -t set,get`: it completes and reports requests per second;
and at the end requires that the server is still running and that its peak RSS stayed
under --rss-limit-mib (the 100 MB request was refused, not buffered).

Every wait has a deadline, so a broken server fails the run rather than hanging it.
Exit status 0 when every check held. The last line is "N passed, M failed".
"""
import argparse
import re
import socket
import subprocess
import sys
import threading
import time

from checks import check, checks, proc_status, stop, summary

def resp(*args):
    """One request in RESP2 multibulk form."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    """A raw RESP2 connection that parses replies."""

    def __init__(self, port, timeout=10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def _fill(self):
        chunk = self.s.recv(1 << 16)
        if not chunk:
            raise EOFError("closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """The next reply: bytes for +/$, int for :, None for a null, list for *, and
        ('err', text) for an error."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return ("err", rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise ValueError(f"bad reply line {line!r}")

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self.reply()

    def closed_after(self, deadline):
        """True if the server closes (EOF or reset) before deadline."""
        while time.monotonic() < deadline:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.s.recv(1 << 16):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                return False
        return False


def cli(port, *args):
    """Runs redis-cli with one command; returns its output without the last newline."""
    r = subprocess.run(["redis-cli", "-p", str(port)] + [str(a) for a in args],
                       capture_output=True, timeout=30)
    return r.stdout.decode().rstrip("\n")


def phase_cli(port):
    def expect(args, want):
        got = cli(port, *args)
        ok = want(got) if callable(want) else got == want
        check("redis-cli " + " ".join(map(str, args)), ok, f"got {got!r}")

    expect(["PING"], "PONG")
    expect(["PING", "hello"], "hello")
    expect(["ECHO", "a b c"], "a b c")
    expect(["SET", "greeting", "hello world"], "OK")
    expect(["GET", "greeting"], "hello world")
    expect(["GET", "missing"], "")
    expect(["SET", "short", "v", "EX", "100"], "OK")
    expect(["TTL", "short"], lambda g: g in ("99", "100"))
    expect(["TTL", "greeting"], "-1")
    expect(["TTL", "missing"], "-2")
    expect(["SET", "brief", "v", "PX", "200"], "OK")
    expect(["PTTL", "brief"], lambda g: g.lstrip("-").isdigit() and 0 < int(g) <= 200)
    deadline = time.monotonic() + 10
    while cli(port, "GET", "brief") != "" and time.monotonic() < deadline:
        time.sleep(0.05)
    expect(["EXISTS", "brief"], "0")  # expired
    expect(["SET", "n", "41"], "OK")
    expect(["INCR", "n"], "42")
    expect(["INCR", "fresh"], "1")
    expect(["INCR", "greeting"], "ERR value is not an integer or out of range")
    expect(["SET", "padded", "007"], "OK")
    expect(["INCR", "padded"], "ERR value is not an integer or out of range")
    expect(["SET", "top", "9223372036854775807"], "OK")
    expect(["INCR", "top"], "ERR increment or decrement would overflow")
    expect(["MSET", "a", "1", "b", "2", "c", "3"], "OK")
    expect(["MGET", "a", "b", "nope", "c"], "1\n2\n\n3")
    expect(["EXISTS", "a", "b", "nope", "a"], "3")
    expect(["DEL", "a", "b", "nope"], "2")
    expect(["EXISTS", "a", "b", "c"], "1")
    expect(["EXPIRE", "c", "50"], "1")
    expect(["TTL", "c"], lambda g: g in ("49", "50"))
    expect(["EXPIRE", "nope", "50"], "0")
    expect(["EXPIRE", "c", "0"], "1")
    expect(["EXISTS", "c"], "0")
    expect(["SET", "k", "v", "EX", "0"], "ERR invalid expire time in 'set' command")
    expect(["SET", "k", "v", "BOGUS"], "ERR syntax error")
    expect(["GET"], "ERR wrong number of arguments for 'get' command")
    expect(["FROBNICATE", "x"], lambda g: g.startswith("ERR unknown command 'FROBNICATE'"))


def phase_pipeline(port, count):
    c = Conn(port)
    req = b""
    for i in range(count):
        req += resp("SET", f"p:{i}", f"value-{i}") + resp("GET", f"p:{i}") + resp("INCR", "p:count")
    req += resp("NOSUCH") + resp("PING")  # an error in the middle does not stop the rest
    c.s.sendall(req)
    bad = []
    for i in range(count):
        got = (c.reply(), c.reply(), c.reply())
        if got != (b"OK", f"value-{i}".encode(), i + 1) and len(bad) < 3:
            bad.append((i, got))
    tail = (c.reply(), c.reply())
    ok_tail = isinstance(tail[0], tuple) and tail[0][1].startswith("ERR unknown command") and tail[1] == b"PONG"
    check(f"{3 * count + 2} pipelined requests in one write: replies in order", not bad and ok_tail,
          f"first wrong: {bad}, tail {tail}")

    data = b"".join(resp("SET", f"pipe:{i}", i) for i in range(count))
    r = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=data, capture_output=True, timeout=60)
    out = r.stdout.decode()
    check("redis-cli --pipe", r.returncode == 0 and f"errors: 0, replies: {count}" in out, out.strip()[-80:])


def phase_concurrent(port, conns, each):
    errors = []

    def run():
        try:
            c = Conn(port)
            for _ in range(each):
                c.call("INCR", "shared")
        except Exception as e:  # reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=run) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    got = Conn(port).call("GET", "shared")
    check(f"{conns} connections x {each} INCRs of one key", not errors and got == str(conns * each).encode(),
          f"got {got!r}, errors {errors[:2]}")


def phase_malformed(port):
    for name, data in (("bad multibulk length", b"*abc\r\n"),
                       ("bad bulk length", b"*1\r\n$x\r\n"),
                       ("'$' missing", b"*2\r\n$3\r\nGET\r\n:1\r\n"),
                       ("bulk without CRLF", b"*1\r\n$4\r\nPINGxx")):
        c = Conn(port)
        c.s.sendall(resp("PING") + data)
        first = c.reply()
        try:
            second = c.reply()
        except (EOFError, OSError) as e:  # closed, reset or timed out
            second = repr(e)
        closed = c.closed_after(time.monotonic() + 5)
        ok = first == b"PONG" and isinstance(second, tuple) and second[1].startswith("ERR Protocol error") and closed
        check(f"malformed request ({name}): PONG, then a protocol error and the close", ok,
              f"got {first!r}, {second!r}, closed={closed}")
    c = Conn(port)
    c.s.sendall(b"PING\r\nSET inline value\r\nGET inline\r\n")
    got = [c.reply() for _ in range(3)]
    check("inline commands", got == [b"PONG", b"OK", b"value"], f"got {got}")


def phase_big_bulk(port):
    other = Conn(port)
    check("another client before the 100 MB request", other.call("PING") == b"PONG")
    c = Conn(port)
    head = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$104857600\r\n"
    sent = [0]

    def send():
        try:
            c.s.sendall(head)
            chunk = b"x" * (1 << 16)
            for _ in range(16):  # 1 MiB of the 100
                c.s.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            pass  # the server closed

    t = threading.Thread(target=send)
    t.start()
    try:
        got = c.reply()
    except (EOFError, OSError) as e:  # closed, reset or timed out
        got = repr(e)
    closed = c.closed_after(time.monotonic() + 10)
    t.join(30)
    check("100 MB bulk string: a protocol error, then the close",
          isinstance(got, tuple) and got[1].startswith("ERR Protocol error") and closed, f"got {got!r}, closed={closed}")
    check("another client's PING answered after it", other.call("PING") == b"PONG")
    value = bytes(range(256)) * 4096  # 1 MiB, every byte value
    check("a 1 MiB value round-trips", other.call("SET", "mib", value) == b"OK" and other.call("GET", "mib") == value)


def phase_benchmark(port, requests):
    r = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(requests), "-P", "16", "-q", "-t", "set,get"],
                       capture_output=True, timeout=240)
    out = r.stdout.decode()
    figures = re.findall(r"(SET|GET): ([\d.]+) requests per second", out)
    check("redis-benchmark -P 16 -t set,get", r.returncode == 0 and {k for k, _ in figures} == {"SET", "GET"},
          ", ".join(f"{k} {float(v):.0f}/s" for k, v in figures) or out[-200:] + r.stderr.decode()[-200:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="the kv_server program")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pipelined", type=int, default=2000, help="SET+GET+INCR triples in one write")
    ap.add_argument("--benchmark-requests", type=int, default=20000)
    ap.add_argument("--rss-limit-mib", type=float, default=64.0)
    args = ap.parse_args()

    server = subprocess.Popen([args.server, "0", str(args.workers), "127.0.0.1"], stdout=subprocess.PIPE)
    try:
        line = server.stdout.readline().decode()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            print(f"kv_clients: the server did not start: {line!r}", file=sys.stderr)
            return 1
        port = int(m.group(1))
        print(f"server pid {server.pid} on port {port}, {args.workers} workers", flush=True)
        t0 = time.monotonic()
        phase_cli(port)
        phase_pipeline(port, args.pipelined)
        phase_concurrent(port, 8, 250)
        phase_malformed(port)
        phase_big_bulk(port)
        phase_benchmark(port, args.benchmark_requests)
        alive = server.poll() is None
        check("server still running", alive)
        if alive:
            hwm = proc_status(server.pid, "VmHWM") / 1024.0
            check(f"server peak RSS (VmHWM) under {args.rss_limit_mib:g} MiB", hwm < args.rss_limit_mib,
                  f"peak {hwm:.1f} MiB")
        print(f"total {time.monotonic() - t0:.1f}s")
    finally:
        stop(server)
    check("server exits 0 on SIGTERM", server.returncode == 0, f"status {server.returncode}")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
