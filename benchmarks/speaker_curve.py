"""Accuracy against the number of training speakers, from cross-validation reports made with
`edgeser evaluate --cv … --train-speakers N` (and without it: every training speaker). Prints a
table, fits UA = a + b·log2(speakers) to the runs, and draws the curve.

    python benchmarks/speaker_curve.py runs/xp/ravdess_train6 runs/xp/ravdess_train12 \\
        docs/results/ravdess_cv4_noval120.json … --json benchmarks/results/speaker_curve_ravdess.json \\
        --png benchmarks/results/speaker_curve_ravdess.png
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_json  # noqa: E402

PROTOCOLS = {"unadapted": "pooled", "enrolled": "enrolled"}   # what is plotted -> report key


def read_report(path: Path) -> dict:
    """A cv.json (a run folder or the file itself, slimmed copies in docs/results included)."""
    f = path / "cv.json" if path.is_dir() else path
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {f}: {e}")


def training_speakers(rep: dict) -> int:
    """Speakers each fold trained on: --train-speakers where given, else every speaker not tested."""
    if rep.get("train_speakers"):
        return int(rep["train_speakers"])
    speakers = {s for f in rep["folds"] for s in f["test_speakers"]}
    counts = {len(speakers) - len(f["test_speakers"]) for f in rep["folds"]}
    if len(counts) != 1:
        raise SystemExit("error: folds of unequal size; give --train-speakers runs")
    return counts.pop()


def fit_log2(n, ua):
    """Least squares UA = a + b·log2(n): (a, b), b being the gain per doubling of speakers."""
    b, a = np.polyfit(np.log2(n), ua, 1)
    return float(a), float(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path, help="cv.json files or `evaluate --cv` output folders")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--target", type=float, default=None, metavar="UA",
                    help="a UA (e.g. 0.65): where each fit would reach it, extrapolated, and the line on the plot")
    args = ap.parse_args(argv)

    runs = []
    for p in args.reports:
        rep = read_report(p)
        row = {"report": str(p), "train_speakers": training_speakers(rep)}
        for name, key in PROTOCOLS.items():
            if key in rep:
                row[name] = rep[key]["UA"]
        runs.append(row)
    by = defaultdict(list)
    for r in runs:
        by[r["train_speakers"]].append(r)
    print(f"{'speakers':>8s} {'runs':>5s} {'UA':>16s} {'enrolled UA':>16s}")
    table = []
    for n in sorted(by):
        rs = by[n]
        cells = {}
        for name in PROTOCOLS:
            vals = [r[name] for r in rs if name in r]
            cells[name] = float(np.mean(vals)) if vals else None
        table.append({"train_speakers": n, "runs": len(rs), **cells})
        fmt = lambda v, k: f"{v:.1%} ({', '.join(f'{r[k]:.1%}' for r in rs if k in r)})" if v is not None else "–"
        print(f"{n:8d} {len(rs):5d} {fmt(cells['unadapted'], 'unadapted'):>16s} {fmt(cells['enrolled'], 'enrolled'):>16s}")
    points = {name: [(r["train_speakers"], r[name]) for r in runs if name in r] for name in PROTOCOLS}
    fits = {}
    for name, pts in points.items():
        if len({n for n, _ in pts}) >= 2:
            a, b = fit_log2(*zip(*pts))
            fits[name] = {"a": a, "gain_per_doubling": b}
            line = f"{name}: UA = {a:.1%} + {b:.1%} x log2(speakers)"
            if args.target and b > 0:
                fits[name]["speakers_at_target"] = float(2 ** ((args.target - a) / b))
                line += f"; {args.target:.0%} at {fits[name]['speakers_at_target']:.0f} speakers if the trend held"
            print(line)
    if args.png:
        from edgeser.figures import pyplot, save_figure

        plt = pyplot()

        fig, ax = plt.subplots(figsize=(6, 4))
        for (name, fit), color in zip(fits.items(), ("tab:blue", "tab:orange")):
            pts = points[name]
            ax.scatter([n for n, _ in pts], [100 * u for _, u in pts], color=color, alpha=0.6)
            xs = np.array(sorted({n for n, _ in pts}))
            line = lambda x: 100 * (fit["a"] + fit["gain_per_doubling"] * np.log2(x))
            ax.plot(xs, line(xs), color=color, label=f"{name}: +{100 * fit['gain_per_doubling']:.1f} points per doubling")
            if "speakers_at_target" in fit and fit["speakers_at_target"] > xs[-1]:
                ext = np.array([xs[-1], fit["speakers_at_target"]])
                ax.plot(ext, line(ext), color=color, linestyle="--", alpha=0.6)
        if args.target:
            ax.axhline(100 * args.target, color="grey", linestyle=":", label=f"target {args.target:.0%}")
        ax.set_xscale("log", base=2)
        ticks = sorted(by) + sorted({round(f["speakers_at_target"]) for f in fits.values()
                                     if f.get("speakers_at_target", 0) > max(by)})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(n) for n in ticks])
        ax.set_xlabel("training speakers per fold")
        ax.set_ylabel("UA (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        save_figure(fig, args.png)
        print(f"plot: {args.png}")
    if args.json:
        write_json({"command": "python " + " ".join(sys.argv), "runs": runs, "table": table, "fits": fits}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
