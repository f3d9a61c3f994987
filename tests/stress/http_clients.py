#!/usr/bin/env python3
"""Real HTTP clients against the HTTP example (examples/http_server.cpp), on loopback.

Starts the server on 127.0.0.1 (a free port), then:
  1. raw sockets, one check per RFC 9110/9112 rule the server must keep, each on the
     exact bytes of the responses (status line, headers, body) and on whether the
     connection stays open or is closed: HTTP/1.0 with and without keep-alive,
     "Connection: close", "Expect: 100-continue", HEAD, Host (missing, twice), chunked
     bodies, Content-Length with Transfer-Encoding, unsupported versions (505, the
     HTTP/2 preface), a 70 KB request-target (414), Date and Server on every response;
  2. curl: keep-alive over two URLs, HEAD (-I), POST with a body, a chunked POST,
     "Expect: 100-continue" followed by a second request on the same connection;
  3. ab -n N -c 10 (HTTP/1.0, a connection per request) and ab -k (HTTP/1.0 keep-alive);
  4. h2load --h1 -n M -c 10 -m 10 (pipelined);
  5. wrk -t1 -c8 -d1s last: the server still serves, without errors.
After every client the server must still answer a plain GET. Every wait has a deadline
and every client a timeout, so a broken server fails the run rather than hanging it.
The clients are installed by scripts/install-deps.sh (test). Exit status 0 when every
check held; the last line is "N passed, M failed".
"""
import argparse
import re
import shutil
import socket
import subprocess
import sys
import time

from checks import check, checks, proc_status, stop, summary

DATE = rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"
BODY = b"Hello, World!"

def response_re(status, connection=None, body=BODY, head=False):
    """The regex of one whole response as the server must send it."""
    r = b"HTTP/1\\.1 " + re.escape(status) + rb"\r\nServer: spindle\r\nDate: " + DATE + rb"\r\n"
    r += b"Content-Length: " + str(len(body)).encode() + rb"\r\n"
    if body:
        r += rb"Content-Type: text/plain\r\n"
    if connection:
        r += b"Connection: " + re.escape(connection) + rb"\r\n"
    r += rb"\r\n"
    if not head:
        r += re.escape(body)
    return r


OK = response_re(b"200 OK")


def error_re(status):
    return response_re(status, b"close", body=b"")


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until(s, pattern, deadline):
    """Reads until the bytes read fully match `pattern` (a regex), the peer closes, or the
    deadline passes. Returns (data, how): how is 'match', 'eof', 'reset' or 'timeout'."""
    data = b""
    rx = re.compile(pattern, re.S)
    while True:
        if rx.fullmatch(data):
            return data, "match"
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


def closed_after(s, timeout=5.0):
    """The peer closes with nothing more sent: 'eof'/'reset'; else what came or 'open'."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            return "eof" if not chunk else f"more bytes: {chunk[:60]!r}"
    except socket.timeout:
        return "open"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    return "open"


def still_open(s, port):
    """The connection still serves: one more request gets its 200."""
    s.sendall(b"GET /again HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data, how = read_until(s, OK, time.monotonic() + 10.0)
    return how == "match"


def exchange(port, payload, want, then_closed, name):
    """Sends payload on a new connection; the response bytes must match `want` exactly,
    then the connection must be closed (then_closed) or still serve."""
    s = connect(port)
    try:
        s.sendall(payload)
        data, how = read_until(s, want, time.monotonic() + 10.0)
        ok = how == "match"
        if ok and then_closed:
            after = closed_after(s)
            ok = after in ("eof", "reset")
            how = f"then {after}"
        elif ok:
            ok = still_open(s, port)
            how = "then still serving" if ok else "then not serving"
        return check(name, ok, f"{data[:160]!r} ({how})")
    finally:
        s.close()


def phase_raw(port):
    exchange(port, b"GET / HTTP/1.0\r\n\r\n", response_re(b"200 OK", b"close"), True,
             "HTTP/1.0 without keep-alive: 200 with Connection: close, then the close")
    exchange(port, b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", response_re(b"200 OK", b"keep-alive"), False,
             "HTTP/1.0 with keep-alive: 200 with Connection: keep-alive, connection kept")
    exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\nHost: a\r\n\r\n",
             response_re(b"200 OK", b"close"), True,
             "Connection: close: 200 with Connection: close, then the close (a pipelined request after it unanswered)")
    exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n", response_re(b"200 OK", b"close"),
             True, "Connection: close as the last of a list")
    exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", OK, False, "HTTP/1.1: 200 with Date and Server, connection kept")

    # Expect: 100-continue: the 100 comes before the body is sent, the 200 after it, and
    # the next request on the connection is a request, not body.
    s = connect(port)
    try:
        s.sendall(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        data, how = read_until(s, rb"HTTP/1\.1 100 Continue\r\n\r\n", time.monotonic() + 10.0)
        ok = check("Expect: 100-continue gets exactly 'HTTP/1.1 100 Continue' before the body is sent",
                   how == "match", f"{data!r} ({how})")
        if ok:
            s.sendall(b"hello" + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
            data, how = read_until(s, OK + OK, time.monotonic() + 10.0)
            check("then the body gets its 200, and the next request on the connection its own 200",
                  how == "match", f"{data[:80]!r}... {len(data)} bytes ({how})")
    finally:
        s.close()
    exchange(port, b"POST /e HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
             response_re(b"200 OK", b"close"), True, "Expect on HTTP/1.0 is ignored (no 100)")

    exchange(port, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
             response_re(b"200 OK", head=True) + OK, False,
             "HEAD: the GET response's head without its body, then the pipelined GET's whole response")
    exchange(port, b"GET / HTTP/1.1\r\n\r\n", error_re(b"400 Bad Request"), True, "HTTP/1.1 without Host: 400, close")
    exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", error_re(b"400 Bad Request"), True,
             "two Host fields: 400, close")
    exchange(port, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", error_re(b"400 Bad Request"), True,
             "an invalid Host value: 400, close")
    exchange(port, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: a\r\nhost: b\r\n\r\n",
             error_re(b"400 Bad Request"), True, "two Host fields on HTTP/1.0: 400, close")
    exchange(port, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
             OK + OK, False, "a chunked body (extension, trailer) is read: 200, then the next request's 200")
    exchange(port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             error_re(b"400 Bad Request"), True, "Content-Length with Transfer-Encoding: 400, close")
    exchange(port, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
             error_re(b"400 Bad Request"), True, "chunked not the last transfer coding: 400, close")
    exchange(port, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
             error_re(b"501 Not Implemented"), True, "an unknown transfer coding: 501, close")
    exchange(port, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
             error_re(b"400 Bad Request"), True, "a malformed chunk size: 400, close")
    exchange(port, b"GET / HTTP/3.7\r\nHost: a\r\n\r\n", error_re(b"505 HTTP Version Not Supported"), True,
             "HTTP/3.7: 505, close")
    exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", error_re(b"505 HTTP Version Not Supported"), True,
             "the HTTP/2 preface: one 505, close")
    exchange(port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", error_re(b"414 URI Too Long"), True,
             "a 70 KB request-target: 414, close")
    exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
             error_re(b"431 Request Header Fields Too Large"), True, "a 70 KB header field: 431, close")


def run(cmd, timeout):
    """Runs a client; returns (rc, stdout, stderr) as text, rc None on a timeout."""
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode(errors="replace"), (e.stderr or b"").decode(errors="replace")


def serving(port, after):
    s = connect(port)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        data, how = read_until(s, OK, time.monotonic() + 10.0)
        check(f"the server still serves after {after}", how == "match", f"{data[:40]!r} ({how})")
    finally:
        s.close()


def phase_curl(port):
    url = f"http://127.0.0.1:{port}"
    reuse = re.compile(r"Re-?using existing connection")
    rc, out, err = run(["curl", "-sS", "-v", "--max-time", "20", url + "/a", url + "/b"], 30)
    check("curl: two URLs on one kept-alive connection", rc == 0 and out == "Hello, World!" * 2 and reuse.search(err),
          f"rc {rc}, {out!r}")
    rc, out, err = run(["curl", "-sS", "-v", "-I", "--max-time", "20", url + "/"], 30)
    check("curl -I: the head of the response, no body ('Excess found' absent)",
          rc == 0 and re.fullmatch(r"HTTP/1\.1 200 OK\r\nServer: spindle\r\nDate: [^\r]+\r\nContent-Length: 13\r\n"
                                   r"Content-Type: text/plain\r\n\r\n", out) and "Excess" not in err,
          f"rc {rc}, {out!r}")
    rc, out, err = run(["curl", "-sS", "--max-time", "20", "-d", "name=value&x=1", url + "/post"], 30)
    check("curl: POST with a body", rc == 0 and out == "Hello, World!", f"rc {rc}, {out!r} {err[-200:]!r}")
    rc, out, err = run(["curl", "-sS", "-v", "--max-time", "20", "-H", "Transfer-Encoding: chunked",
                        "-d", "a chunked body", url + "/chunked"], 30)
    check("curl: chunked POST", rc == 0 and out == "Hello, World!" and "chunked" in err,
          f"rc {rc}, {out!r} {err[-200:]!r}")
    t0 = time.monotonic()
    rc, out, err = run(["curl", "-sS", "-v", "--max-time", "20", "-H", "Expect: 100-continue", "-d", "x=1",
                        url + "/expect", "--next", "--max-time", "20", url + "/after"], 30)
    secs = time.monotonic() - t0
    check("curl: Expect: 100-continue, then a second request on the same connection",
          rc == 0 and out == "Hello, World!" * 2 and "HTTP/1.1 100 Continue" in err and reuse.search(err),
          f"rc {rc}, {out!r}, {secs:.1f}s")
    serving(port, "curl")


def phase_ab(port, n):
    url = f"http://127.0.0.1:{port}/"
    for name, extra in (("ab", []), ("ab -k", ["-k"])):
        rc, out, err = run(["ab", "-s", "20", "-n", str(n), "-c", "10"] + extra + [url], 120)
        complete = re.search(r"Complete requests:\s+(\d+)", out)
        failed = re.search(r"Failed requests:\s+(\d+)", out)
        ok = rc == 0 and complete and int(complete.group(1)) == n and failed and int(failed.group(1)) == 0
        detail = f"rc {rc}, complete {complete and complete.group(1)}, failed {failed and failed.group(1)}"
        if extra:
            kept = re.search(r"Keep-Alive requests:\s+(\d+)", out)
            ok = ok and kept and int(kept.group(1)) == n
            detail += f", keep-alive {kept and kept.group(1)}"
        check(f"{name} -n {n} -c 10: every request completed, none failed", ok, detail + ("" if ok else err[-300:]))
        serving(port, name)


def phase_h2load(port, n):
    rc, out, err = run(["h2load", "--h1", "-n", str(n), "-c", "10", "-m", "10", f"http://127.0.0.1:{port}/"], 120)
    line = re.search(r"requests: .*", out)
    codes = re.search(r"status codes: .*", out)
    check(f"h2load --h1 -n {n} -c 10 -m 10: all succeeded, all 2xx",
          rc == 0 and f"{n} succeeded" in out and codes and codes.group(0).startswith(f"status codes: {n} 2xx"),
          f"rc {rc}: {line and line.group(0)}; {codes and codes.group(0)}")
    serving(port, "h2load")


def phase_wrk(port):
    rc, out, err = run(["wrk", "-t1", "-c8", "-d1s", f"http://127.0.0.1:{port}/plaintext"], 60)
    done = re.search(r"(\d+) requests in", out)
    check("wrk -t1 -c8 -d1s: requests served, no socket errors, no non-2xx",
          rc == 0 and done and int(done.group(1)) > 0 and "Socket errors" not in out and "Non-2xx" not in out,
          f"rc {rc}, {done and done.group(0)}" + ("" if rc == 0 else err[-200:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="the http_server program")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ab-requests", type=int, default=1000)
    ap.add_argument("--h2load-requests", type=int, default=10000)
    args = ap.parse_args()

    missing = [c for c in ("curl", "ab", "h2load", "wrk") if shutil.which(c) is None]
    if missing:
        print(f"http_clients: missing {', '.join(missing)}: run scripts/install-deps.sh test", file=sys.stderr)
        return 1
    server = subprocess.Popen([args.server, "0", str(args.workers), "127.0.0.1"], stdout=subprocess.PIPE)
    try:
        line = server.stdout.readline().decode()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            print(f"http_clients: the server did not start: {line!r}", file=sys.stderr)
            return 1
        port = int(m.group(1))
        print(f"server pid {server.pid} on port {port}", flush=True)
        t0 = time.monotonic()
        phase_raw(port)
        serving(port, "the raw-socket checks")
        phase_curl(port)
        phase_ab(port, args.ab_requests)
        phase_h2load(port, args.h2load_requests)
        phase_wrk(port)
        check("server still running", server.poll() is None)
        print(f"total {time.monotonic() - t0:.1f}s")
    finally:
        stop(server)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
