#!/usr/bin/env python3
"""Summarise a spindle execution trace (Runtime::start_trace, Options::trace).

Usage: scripts/trace_report.py TRACE [--png OUT] [--from MS] [--to MS] [--top N]

Prints, from the trace's JSON (Chrome's trace event format, as spindle writes it):
  - per task name: the number of steps, their total time, and the wake-to-run latency
    (from the wake-up to the start of the step it readied: median, p99, max);
  - the longest steps (task, loop, length, how the step ended);
  - per loop: steps, busy time, steals (and tasks stolen), parks (and time parked);
  - the events the loops dropped (a full ring), if any.
With --png, also draws the timeline (matplotlib): one lane per loop (and per foreign
thread that ran pool jobs), task steps coloured by task name, parks grey, steals marked
with a red triangle (an I/O steal, events taken from another loop's epoll, orange);
--from and --to (ms from the trace's start) draw only that window.
"""
import argparse
import json
import sys
from collections import defaultdict


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def fmt_us(us):
    """A duration given in microseconds, in a readable unit."""
    if us != us:  # nan
        return "-"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.1f} us"


def load(path):
    with open(path) as f:
        doc = json.load(f)
    if isinstance(doc, list):
        return doc, {}
    return doc.get("traceEvents", []), doc.get("otherData", {})


class Trace:
    def __init__(self, events, other):
        self.other = other
        self.lane_names = {}  # tid -> name
        self.steps = []  # (tid, ts, dur, name, args)
        self.parks = []  # (tid, ts, dur, reason)
        self.jobs = []  # (tid, ts, dur, name)
        self.steals = []  # (tid, ts, from, n)
        self.flow_start = {}  # id -> ts
        self.flow_end = {}  # id -> ts (the step it readied begins)
        self.step_at = {}  # (tid, ts) -> step name
        for e in events:
            ph = e.get("ph")
            tid = e.get("tid", 0)
            name = e.get("name", "")
            ts = float(e.get("ts", 0))
            if ph == "M" and name == "thread_name":
                self.lane_names[tid] = e.get("args", {}).get("name", str(tid))
            elif ph == "X":
                dur = float(e.get("dur", 0))
                cat = e.get("cat", "")
                if cat == "step":
                    self.steps.append((tid, ts, dur, name, e.get("args", {})))
                    self.step_at[(tid, ts)] = name
                elif cat == "park":
                    self.parks.append((tid, ts, dur, e.get("args", {}).get("reason", "?")))
                elif cat == "job":
                    self.jobs.append((tid, ts, dur, name))
            elif ph == "i" and name in ("steal", "io steal"):
                a = e.get("args", {})
                self.steals.append((tid, ts, a.get("from"), a.get("tasks", a.get("events", 0)), name == "io steal"))
            elif ph == "s":
                self.flow_start[e.get("id")] = ts
            elif ph == "f":
                self.flow_end[e.get("id")] = (tid, ts)
        self.t0 = min([s[1] for s in self.steps] + [p[1] for p in self.parks] + [j[1] for j in self.jobs] or [0])

    def loops(self):
        tids = {s[0] for s in self.steps} | {p[0] for p in self.parks} | {s[0] for s in self.steals}
        tids |= {t for t, n in self.lane_names.items() if n.startswith("loop ")}
        return sorted(t for t in tids if t < 100000)

    def latencies(self):
        """Wake-to-run latency (us) per task name."""
        out = defaultdict(list)
        for fid, (tid, ts) in self.flow_end.items():
            start = self.flow_start.get(fid)
            name = self.step_at.get((tid, ts))
            if start is None or name is None:
                continue
            out[name].append(max(0.0, ts - start))
        for v in out.values():
            v.sort()
        return out


def report(tr, top, out=sys.stdout):
    p = lambda *a: print(*a, file=out)
    per_name = defaultdict(lambda: [0, 0.0])
    for _, _, dur, name, _ in tr.steps:
        per_name[name][0] += 1
        per_name[name][1] += dur
    lat = tr.latencies()
    p("Per task name (steps, time in steps, wake-to-run latency: median / p99 / max, wake-ups counted):")
    p(f"  {'task':<28} {'steps':>8} {'time':>11} {'median':>11} {'p99':>11} {'max':>11} {'wakes':>7}")
    for name, (n, total) in sorted(per_name.items(), key=lambda kv: -kv[1][1]):
        v = lat.get(name, [])
        p(f"  {name[:28]:<28} {n:>8} {fmt_us(total):>11} {fmt_us(percentile(v, 50)):>11} "
          f"{fmt_us(percentile(v, 99)):>11} {fmt_us(v[-1] if v else float('nan')):>11} {len(v):>7}")
    p("")
    p(f"Longest steps (top {top}):")
    for tid, ts, dur, name, args in sorted(tr.steps, key=lambda s: -s[2])[:top]:
        how = args.get("end", "?")
        if how == "suspended":
            how = f"{args.get('wait', 'wait')} at {args.get('at', '?')}"
        p(f"  {fmt_us(dur):>11}  {name[:28]:<28} {tr.lane_names.get(tid, tid)!s:<8} at {fmt_us(ts - tr.t0)}  ({how})")
    p("")
    p("Per loop (steps, busy, steals / tasks stolen, parks / time parked):")
    for tid in tr.loops():
        st = [s for s in tr.steps if s[0] == tid]
        sl = [s for s in tr.steals if s[0] == tid]
        pk = [x for x in tr.parks if x[0] == tid]
        reasons = defaultdict(int)
        for x in pk:
            reasons[x[3]] += 1
        why = ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items()))
        p(f"  {tr.lane_names.get(tid, tid)!s:<8} steps {len(st):>8}  busy {fmt_us(sum(s[2] for s in st)):>11}  "
          f"steals {len(sl):>5} / {sum(int(s[3] or 0) for s in sl):>6}  "
          f"parks {len(pk):>6} / {fmt_us(sum(x[2] for x in pk)):>11}" + (f"  ({why})" if why else ""))
    if tr.jobs:
        p("")
        jobs = defaultdict(list)
        for _, _, dur, name in tr.jobs:
            jobs[name].append(dur)
        p("Pool jobs (count, median, max):")
        for name, v in sorted(jobs.items()):
            v.sort()
            p(f"  {name:<28} {len(v):>8} {fmt_us(percentile(v, 50)):>11} {fmt_us(v[-1]):>11}")
    dropped = tr.other.get("dropped_events", 0)
    p("")
    p(f"Dropped events: {dropped}" + (" (the rings were full: the figures above miss them)" if dropped else ""))


def draw(tr, path, start_ms=None, end_ms=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes = tr.loops() + sorted({j[0] for j in tr.jobs if j[0] >= 100000})
    row = {tid: i for i, tid in enumerate(lanes)}
    to_ms = lambda us: (us - tr.t0) / 1000.0
    lo = -float("inf") if start_ms is None else start_ms
    hi = float("inf") if end_ms is None else end_ms
    seen = lambda ts, dur: to_ms(ts + dur) >= lo and to_ms(ts) <= hi
    # Colours for the ten task names with the most time in the window drawn.
    totals = defaultdict(float)
    for s in tr.steps:
        if seen(s[1], s[2]):
            totals[s[3]] += s[2]
    names = [n for n, _ in sorted(totals.items(), key=lambda kv: -kv[1])]
    palette = plt.get_cmap("tab10").colors
    colour = {n: palette[i % 10] for i, n in enumerate(names[:10])}
    other = "#8c6d31"
    fig, ax = plt.subplots(figsize=(14, 1.0 + 0.55 * max(1, len(lanes))))
    # Parks first (grey, under the steps), then steps by name, then pool jobs: each a
    # list of (lane, start, duration, colour).
    bars = [(s[0], s[1], s[2], "#d0d0d0") for s in tr.parks]
    bars += [(s[0], s[1], max(s[2], 0.1), colour.get(s[3], other)) for s in tr.steps]
    bars += [(j[0], j[1], j[2], "#17becf") for j in tr.jobs]
    groups = defaultdict(list)
    for tid, ts, dur, c in bars:
        if tid in row and seen(ts, dur):
            groups[(tid, c)].append((to_ms(ts), dur / 1000.0))
    for (tid, c), spans in groups.items():
        ax.broken_barh(spans, (row[tid] - 0.35, 0.7), facecolors=c, edgecolor="none")
    marks = {}
    for io, c in ((False, "red"), (True, "darkorange")):
        st = [s for s in tr.steals if s[0] in row and s[4] == io and seen(s[1], 0)]
        if st:
            ax.scatter([to_ms(s[1]) for s in st], [row[s[0]] - 0.42 for s in st], marker="v", s=14, color=c,
                       zorder=5, linewidths=0)
            marks[io] = c
    if start_ms is not None or end_ms is not None:
        ax.set_xlim(left=start_ms, right=end_ms)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([tr.lane_names.get(t, str(t)) for t in lanes])
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_title("spindle trace: task steps coloured by task name, parks grey, steals marked")
    handles = [Patch(color=colour[n], label=n[:24]) for n in names[:10]]
    if len(names) > 10:
        handles.append(Patch(color=other, label="other tasks"))
    handles.append(Patch(color="#d0d0d0", label="park"))
    if tr.jobs:
        handles.append(Patch(color="#17becf", label="pool job"))
    for io, c in marks.items():
        handles.append(plt.Line2D([], [], marker="v", color=c, linestyle="none", label="I/O steal" if io else "steal"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--png", help="also draw the timeline into this PNG (needs matplotlib)")
    ap.add_argument("--from", dest="start", type=float, help="draw from this time (ms from the trace's start)")
    ap.add_argument("--to", dest="end", type=float, help="draw up to this time (ms from the trace's start)")
    ap.add_argument("--top", type=int, default=10, help="how many of the longest steps to list")
    a = ap.parse_args()
    tr = Trace(*load(a.trace))
    report(tr, a.top)
    if a.png:
        try:
            draw(tr, a.png, a.start, a.end)
        except ImportError:
            sys.exit("trace_report: --png needs matplotlib (Debian: python3-matplotlib; make deps-bench)")
        print(f"\nTimeline: {a.png}")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the output piped into head, say
        sys.stderr.close()
