#!/usr/bin/env python3
"""The strata/peer speed-ratio tables as SVG bar charts, and the scaling
measurements as line charts.

One chart per strata variant (strata-general, strata-max): for every metric
a bar per peer, on a logarithmic axis centred on 1.00, so a bar to the right
means strata is faster by that factor and one to the left slower. A run
with the scaling workloads (metrics named "scale: ...") also gets
<date>-scaling.svg and latest-scaling.svg: per-item cost against the count
of items, one line per filesystem, both axes logarithmic, one panel per
operation. Builds compared with --baseline (names with "@") are left out of
the charts. Pure standard library: the SVG is written by hand.

    python3 bench/plot.py bench/results/2026-11-29.csv [--out bench/results]

writes <date>-<variant>.svg and latest-<variant>.svg beside the CSV (or in
--out). bench/harness.py calls the same code after every run.
"""

import argparse
import csv
import math
import os
import statistics
from xml.sax.saxutils import escape

# Filesystems in the order the harness runs them; others follow by name.
ORDER = ["ext4", "bindfs", "gocryptfs", "securefs", "cryfs", "strata-general", "strata-max"]
# One colour per peer (colour-blind-safe palette).
COLOURS = ["#4477aa", "#66ccee", "#228833", "#ccbb44", "#ee6677", "#aa3377", "#bbbbbb"]
LOW, HIGH = 1 / 32, 32  # axis range of ratios; bars beyond are clipped

LEFT, RIGHT, TOP = 230, 40, 70  # margins in px
PLOT_W = 560
BAR_H, GAP = 9, 10


def ratio(med, s, p, m, better):
    """strata s over peer p on metric m, as a speed ratio (>1: s faster)."""
    a, b = med.get((s, m)), med.get((p, m))
    if not a or not b:
        return None
    return a / b if better == "high" else b / a


def x_of(r):
    r = min(max(r, LOW), HIGH)
    span = math.log2(HIGH) - math.log2(LOW)
    return LEFT + (math.log2(r) - math.log2(LOW)) / span * PLOT_W


def chart(title, metrics, peers, ratios):
    """An SVG document: `ratios[(metric, peer)]` is a ratio or None."""
    group_h = len(peers) * BAR_H + GAP
    legend_h = 30
    height = TOP + len(metrics) * group_h + 40 + legend_h
    width = LEFT + PLOT_W + RIGHT
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<title>{escape(title)}</title>',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="14" font-weight="bold">'
           f'{escape(title)}</text>',
           f'<text x="{width / 2:.1f}" y="40" text-anchor="middle" fill="#444">'
           'speed ratio, log scale: right of 1.00 strata is faster, left slower</text>']
    bottom = TOP + len(metrics) * group_h
    for t in [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16]:
        x = x_of(t)
        label = f"{t:g}" if t >= 1 else f"1/{round(1 / t)}"
        stroke = "#000" if t == 1 else "#ddd"
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom}" stroke="{stroke}"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{label}</text>')
    one = x_of(1)
    for i, m in enumerate(metrics):
        y0 = TOP + i * group_h
        out.append(f'<text x="{LEFT - 8}" y="{y0 + len(peers) * BAR_H / 2 + 4:.1f}" '
                   f'text-anchor="end">{escape(m)}</text>')
        for j, p in enumerate(peers):
            r = ratios.get((m, p))
            if r is None:
                continue
            x = x_of(r)
            y = y0 + j * BAR_H
            left, w = min(one, x), abs(x - one)
            out.append(f'<rect class="bar" x="{left:.1f}" y="{y}" width="{max(w, 1):.1f}" '
                       f'height="{BAR_H - 1}" fill="{COLOURS[j % len(COLOURS)]}">'
                       f'<title>{escape(m)} vs {escape(p)}: {r:.2f}</title></rect>')
            tx, anchor = (x + 3, "start") if r >= 1 else (x - 3, "end")
            out.append(f'<text x="{tx:.1f}" y="{y + BAR_H - 1}" font-size="8" '
                       f'text-anchor="{anchor}" fill="#333">{r:.2f}</text>')
    ly = bottom + 34
    lx = LEFT
    for j, p in enumerate(peers):
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{COLOURS[j % len(COLOURS)]}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly}">vs {escape(p)}</text>')
        lx += 14 + 9 * (len(p) + 3)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def ordered(names):
    names = list(names)
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


def write_plots(med, names, metrics, out_dir, stamp):
    """Writes one chart per strata variant; returns the paths written.
    `metrics` maps each metric to "high" or "low" (which is better)."""
    names = ordered(n for n in names if "@" not in n)
    metrics = {m: b for m, b in metrics.items() if not m.startswith(SCALE)}
    if not metrics:
        # A scaling-only run: the ratio charts of the last full run stay.
        return []
    stratas = [n for n in names if n.startswith("strata")]
    peers = [n for n in names if not n.startswith("strata")]
    written = []
    for s in stratas:
        ratios = {(m, p): ratio(med, s, p, m, b) for m, b in metrics.items() for p in peers}
        svg = chart(f"{s} against each peer, {stamp}", list(metrics), peers, ratios)
        for name in (f"{stamp}-{s}.svg", f"latest-{s}.svg"):
            path = os.path.join(out_dir, name)
            with open(path, "w") as f:
                f.write(svg)
            written.append(path)
    return written


SCALE = "scale: "


def scaling_panels(metrics):
    """Groups scaling metrics by operation: {operation: [(count, metric)]},
    for metrics named "scale: <operation> <count> <unit>" whose count is
    like 1k, 10k, 100k."""
    panels = {}
    for m in metrics:
        words = m[len(SCALE):].split()
        if words[0] not in ("create", "stat", "delete", "ls"):
            continue
        for i, w in enumerate(words):
            if w.endswith("k") and w[:-1].isdigit():
                op = " ".join(words[:i] + words[i + 1:])
                panels.setdefault(op, []).append((int(w[:-1]) * 1000, m))
                break
    return {op: sorted(v) for op, v in panels.items() if len(v) > 1}


def line_panel(title, series, x0, y0, w, h, colours):
    """One log-log panel: `series` is [(name, [(x, y)])]."""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts if y > 0]
    if not xs or not ys:
        return []
    lx0, lx1 = math.log10(min(xs)), math.log10(max(xs))
    ly0, ly1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    if ly1 == ly0:
        ly1 += 1
    if lx1 == lx0:
        lx1 += 1
    px = lambda x: x0 + 40 + (math.log10(x) - lx0) / (lx1 - lx0) * (w - 60)
    py = lambda y: y0 + h - 25 - (math.log10(y) - ly0) / (ly1 - ly0) * (h - 50)
    out = [f'<text x="{x0 + w / 2:.1f}" y="{y0 + 12}" text-anchor="middle" font-weight="bold">'
           f'{escape(title)}</text>']
    for e in range(ly0, ly1 + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{x0 + 40}" y1="{y:.1f}" x2="{x0 + w - 20}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 + 36}" y="{y + 4:.1f}" text-anchor="end" font-size="9">{10 ** e:g}</text>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{y0 + h - 10}" text-anchor="middle" font-size="9">'
                   f'{x // 1000}k</text>')
    for j, (name, pts) in enumerate(series):
        pts = [(x, y) for x, y in sorted(pts) if y > 0]
        if not pts:
            continue
        c = colours[j % len(colours)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{c}">'
                       f'<title>{escape(name)} {escape(title)} {x // 1000}k: {y:.3g}</title></circle>')
    return out


def write_scaling(med, names, metrics, out_dir, stamp):
    """Writes the scaling chart if the run has scaling metrics; returns the
    paths written."""
    panels = scaling_panels(metrics)
    if not panels:
        return []
    names = ordered(n for n in names if "@" not in n)
    # One colour per filesystem, the same in every run.
    colours = [COLOURS[ORDER.index(n) % len(COLOURS)] if n in ORDER else COLOURS[-1] for n in names]
    cols, pw, ph = 3, 300, 220
    rows = (len(panels) + cols - 1) // cols
    width, height = cols * pw + 20, rows * ph + 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<title>per-item cost as the work grows, {stamp}</title>',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="14" font-weight="bold">'
           f'Per-item cost as the work grows, {stamp}</text>',
           f'<text x="{width / 2:.1f}" y="40" text-anchor="middle" fill="#444">'
           'µs per item against the number of items, log-log: a flat line is flat scaling</text>']
    for k, (op, pts) in enumerate(panels.items()):
        series = [(n, [(c, med[(n, m)]) for c, m in pts if (n, m) in med]) for n in names]
        out += line_panel(op, series, 10 + (k % cols) * pw, 50 + (k // cols) * ph, pw, ph, colours)
    lx, ly = 20, height - 14
    for j, n in enumerate(names):
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colours[j % len(colours)]}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly}">{escape(n)}</text>')
        lx += 14 + 7 * (len(n) + 3)
    out.append("</svg>")
    svg = "\n".join(out) + "\n"
    written = []
    for name in (f"{stamp}-scaling.svg", "latest-scaling.svg"):
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write(svg)
        written.append(path)
    return written


def read_csv(path):
    """(medians, names, metrics in file order with their direction, date)."""
    samples, metrics, stamp = {}, {}, None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            stamp = stamp or row["date"]
            metrics.setdefault(row["metric"], row["better"])
            samples.setdefault((row["filesystem"], row["metric"]), []).append(float(row["value"]))
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    names = {n for n, _ in samples}
    return med, names, metrics, stamp


def plot_csv(path, out_dir=None, order=None):
    med, names, metrics, stamp = read_csv(path)
    if order:
        metrics = {m: metrics[m] for m in order if m in metrics} | metrics
    out_dir = out_dir or os.path.dirname(os.path.abspath(path))
    scale = [m for m in metrics if m.startswith(SCALE)]
    return write_plots(med, names, metrics, out_dir, stamp) + write_scaling(med, names, scale, out_dir, stamp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="a results CSV written by bench/harness.py")
    ap.add_argument("--out", default=None, help="directory for the SVGs (default: beside the CSV)")
    q = ap.parse_args()
    import harness  # the metric order of the tables; harness imports this module too
    for p in plot_csv(q.csv, q.out, order=list(harness.METRICS)):
        print(p)


if __name__ == "__main__":
    main()
