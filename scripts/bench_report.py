#!/usr/bin/env python3
"""The benchmark report, from the figures scripts/bench.py wrote (bench-results/latest.json):

  - a timestamped copy of the figures beside it (bench-results/bench-<when>.json), so runs
    can be compared later;
  - a PNG chart of spindle against its peers (bench-results/latest.png), drawn with
    gnuplot (Debian's gnuplot-nox: scripts/install-deps.sh bench installs it);
  - with --readme, the table in README.md between the bench-table markers, rewritten.

bench.py calls publish() after each run (archive + chart); the README is rewritten only
on request, so that a quick or noisy run does not touch a tracked file by accident:

  scripts/bench_report.py                 archive + chart from bench-results/latest.json
  scripts/bench_report.py --readme        ... and rewrite README.md's table
  scripts/bench_report.py --json F --png P --no-archive

The chart has one row per table row that has a peer figure, and a bar pair per row: the
peer's figure and spindle's, both divided by the peer's (so the peer's bar is always 1),
on a log scale, because the figures span orders of magnitude (ns per yield to MiB of
RSS) and a ratio of 1/4 is as far from 1 as a ratio of 4. A floor, where the row has
one, is a dot.
"""
import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
BEGIN = "<!-- bench-table:begin"
END = "<!-- bench-table:end -->"


def load(path):
    """The figures bench.py wrote. Throws ValueError naming the file if they are unusable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read benchmark figures ({e})") from e
    if not isinstance(data.get("table"), list):
        raise ValueError(f"{path}: no 'table' list (not written by scripts/bench.py?)")
    return data


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fmt(v):
    """As bench.py prints figures: 3 significant digits or so; '-' for none."""
    if isinstance(v, str):
        return v
    if num(v) is None:
        return "-"
    if 0 < abs(v) < 0.1:
        return f"{v:.2g}"  # e.g. an idle runtime's CPU %: two significant digits, not 0.00
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def ratio_text(r):
    """spindle/peer as text: two decimals, or two significant digits below 0.1."""
    return "-" if num(r) is None else f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def archive(data, src):
    """Copies the figures to bench-results/bench-<when>.json; returns that path."""
    when = re.sub(r"[^0-9A-Za-z]+", "-", str(data.get("when", "unknown"))).strip("-")
    dst = RESULTS / f"bench-{when}.json"
    RESULTS.mkdir(exist_ok=True)
    if Path(src).resolve() != dst.resolve():
        shutil.copyfile(src, dst)
    return dst


def describe(data):
    reps = data.get("repetitions")
    kind = "quick run, 1 repetition" if reps == 1 else f"median of {reps} repetitions"
    more = data.get("more_repetitions", data.get("paced_repetitions"))
    if more and more != reps:
        which = "paced and Asio HTTP rows" if "more_repetitions" in data else "paced HTTP rows"
        kind += f"; {which}: median of {more}"
    contended = data.get("contended_repetitions")
    if contended:
        kind += f"; contended rows: median and worst of {contended}"
    return f"{data.get('when', '?')}, {kind}"


def markdown_table(data):
    """The table as Markdown (the columns bench.py prints)."""
    head = ["workload", "figure", "spindle", "peer", "floor", "spindle/peer", "better"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * 4 + "---|"]
    for r in data["table"]:
        ratio = num(r.get("ratio"))
        cells = [r.get("workload", "?"), r.get("figure", "?"), fmt(r.get("spindle")), fmt(r.get("peer")),
                 fmt(r.get("floor")), ratio_text(ratio), r.get("better", "")]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def rewrite_readme(data, readme, source):
    """Replaces what lies between the bench-table markers of `readme` with the table.
    Throws ValueError if the markers are missing or out of order."""
    text = Path(readme).read_text()
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < 0 or e < b:
        raise ValueError(f"{readme}: no '{BEGIN} ... -->' ... '{END}' section to rewrite")
    b = text.index("\n", b) + 1  # keep the begin marker's line as it is
    body = (f"Figures of {describe(data)} ({source}). The peer is Boost.Fiber unless the "
            f"workload names another; a row without a peer has its floor instead. The machine is "
            f"small and shared, so figures are noisy: compare only figures of one run.\n\n"
            f"{markdown_table(data)}\n")
    Path(readme).write_text(text[:b] + body + text[e:])


def gnuplot_quote(s):
    """A gnuplot double-quoted string; a newline in s becomes gnuplot's \\n."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def chart(data, png):
    """Draws the chart with gnuplot. Returns None on success, else why it was skipped."""
    gp = shutil.which("gnuplot")
    if gp is None:
        return "gnuplot not found (scripts/install-deps.sh bench installs gnuplot-nox)"
    rows, skipped = [], 0
    for r in data["table"]:
        s, p, f = num(r.get("spindle")), num(r.get("peer")), num(r.get("floor"))
        if s is None or p is None or p <= 0 or s <= 0 or r.get("better") not in ("lower", "higher"):
            skipped += 1  # failed, no peer, not on a log scale, or no better side: table only
            continue
        label = f"{r.get('workload', '?')}: {r.get('figure', '?')}"
        if r.get("better") == "higher":
            label += " (higher is better)"
        better = s <= p if r["better"] == "lower" else s >= p
        rows.append((label, s / p, f / p if f is not None and f > 0 else None, better))
    if not rows:
        return "no row has both a spindle and a peer figure"

    values = [1.0] + [r[1] for r in rows] + [r[2] for r in rows if r[2] is not None]
    lo = 10 ** math.floor(math.log10(min(values) / 1.5))
    hi = 10 ** math.ceil(math.log10(max(values) * 1.5))
    n = len(rows)
    # One data line per bar: x (bar end), y (centre), y half-height, colour, text.
    # Rows go top to bottom in table order: row i is at y = n - 1 - i.
    lines = []
    for i, (label, ratio, floor, better) in enumerate(rows):
        y = n - 1 - i
        lines.append(f"{y + 0.19:.2f} 1 0.17 0 \"\"")
        lines.append(f"{y - 0.19:.2f} {ratio:.6g} 0.17 {1 if better else 2} \"{ratio_text(ratio)}\"")
    floors = [f"{n - 1 - i} {fl:.6g}" for i, (_, _, fl, _) in enumerate(rows) if fl is not None]
    # '%' would be read as a format character in a tic label.
    ytics = ", ".join(f"{gnuplot_quote(label.replace('%', '%%'))} {n - 1 - i}" for i, (label, *_rest) in enumerate(rows))
    longest = max(len(r[0]) for r in rows)
    title = f"spindle against its peers: each figure divided by the peer's\n{describe(data)}"
    if skipped:
        title += f"\n{skipped} row(s) are only in the table (a failed run, no peer, or neither side better)"
    script = f"""
set terminal pngcairo noenhanced size {700 + 7 * longest},{190 + 46 * n} font "sans,10"
set output {gnuplot_quote(png)}
set title {gnuplot_quote(title)}
set logscale x
set xrange [{lo:g}:{hi:g}]
set yrange [-0.7:{n - 0.3}]
set ytics ({ytics}) scale 0
set xlabel "figure / the peer's (log scale): below 1 is better, unless the row says higher is better" offset 0,-0.4
set bmargin 7
set grid xtics
set key below horizontal maxrows 1 reverse Left
set rmargin 8
set arrow from 1, graph 0 to 1, graph 1 nohead dt 2 lc rgb "#555555"
set style fill solid 0.85 noborder
set palette defined (0 "#9e9e9e", 1 "#2e7d32", 2 "#e65100")
unset colorbox
set cbrange [0:2]
$bars << EOD
{chr(10).join(lines)}
EOD
$floors << EOD
{chr(10).join(floors) if floors else "0 -1"}
EOD
plot $bars using ({lo:g}*sqrt($2/{lo:g})):1:({lo:g}):2:($1-$3):($1+$3):4 with boxxyerror lc palette notitle, \\
     $bars using ($2*1.04):1:5 with labels left notitle, \\
     NaN with boxes lc rgb "#9e9e9e" title "peer = 1", \\
     NaN with boxes lc rgb "#2e7d32" title "spindle: better", \\
     NaN with boxes lc rgb "#e65100" title "spindle: worse", \\
     $floors using 2:1 with points pt 7 ps 1.1 lc rgb "black" title "floor / peer"
"""
    with tempfile.NamedTemporaryFile("w", suffix=".gp", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        p = subprocess.run([gp, path], capture_output=True, text=True, timeout=60)
    finally:
        Path(path).unlink(missing_ok=True)
    if p.returncode != 0:
        return f"gnuplot failed: {p.stderr.strip()[-500:]}"
    return None


def publish(json_path=RESULTS / "latest.json", png=None, readme=None, keep_copy=True):
    """What bench.py calls after a run: the timestamped copy, the chart, and (when asked)
    the README table. Prints what it wrote; returns 0, or 1 if something failed."""
    try:
        data = load(json_path)
    except ValueError as e:
        print(f"bench_report: {e}", file=sys.stderr)
        return 1
    status = 0
    if keep_copy:
        print(f"raw figures, kept: {rel(archive(data, json_path))}")
    png = Path(png) if png else Path(json_path).with_suffix(".png")
    why = chart(data, png)
    if why:
        print(f"bench_report: no chart: {why}", file=sys.stderr)
        status = 1
    else:
        print(f"chart: {rel(png)}")
    if readme:
        try:
            rewrite_readme(data, readme, f"`make bench`, {rel(Path(json_path))}")
            print(f"table written to {rel(Path(readme))}")
        except (OSError, ValueError) as e:
            print(f"bench_report: {e}", file=sys.stderr)
            status = 1
    return status


def rel(p):
    p = Path(p).resolve()
    return p.relative_to(ROOT) if p.is_relative_to(ROOT) else p


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(RESULTS / "latest.json"), help="figures written by bench.py")
    ap.add_argument("--png", help="the chart (default: beside the JSON, .png)")
    ap.add_argument("--readme", nargs="?", const=str(ROOT / "README.md"),
                    help="rewrite the table section of this README (default README.md)")
    ap.add_argument("--no-archive", action="store_true", help="do not keep a timestamped copy")
    args = ap.parse_args()
    return publish(args.json, args.png, args.readme, keep_copy=not args.no_archive)


if __name__ == "__main__":
    sys.exit(main())
