"""What the Python tests of the example servers share: a list of named checks, the
server's memory from /proc, stopping the server, and the closing 'N passed, N failed'."""
import subprocess

checks = []  # (name, passed, detail)


def check(name, passed, detail=""):
    checks.append((name, bool(passed), detail))
    print(("ok   " if passed else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    return bool(passed)


def proc_status(pid, field):
    """A /proc/PID/status field in kB (VmHWM, VmRSS), 0 when absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return 0


def stop(server):
    """Terminates the server if it still runs (killed after 10 s)."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def summary():
    """Prints the closing line and returns the exit code."""
    failed = sum(not ok for _, ok, _ in checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0
