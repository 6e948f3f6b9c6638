"""Pictures: the atomic PNG writer every figure goes through, `listen --plot`'s timeline and
`bench --plot`'s latency histograms.

matplotlib is imported inside the functions (the `plot` extra); nothing here loads it at import.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np

PLOT_EXTRA = 'pip install "edgeser[plot]"'


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed; the message names the extra."""


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on a Pi or in CI)."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(f"plotting needs matplotlib: {PLOT_EXTRA}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Write a figure atomically (a half-written PNG never replaces a good one) and close it."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)     # what a failed write left
    return path


def timeline_series(results, labels: Sequence[str]) -> Dict:
    """What the timeline draws, from a stream's results (Result objects or their dicts):
    hop edges (start, end), per-hop probabilities (NaN rows where the hop was silence) and the
    utterances as (start, end, label, confidence)."""
    def get(r, k):
        return r[k] if isinstance(r, dict) else getattr(r, k)

    hops = [r for r in results if get(r, "kind") == "hop"]
    spans = np.array([[get(r, "start_s"), get(r, "end_s")] for r in hops], np.float64).reshape(-1, 2)
    probs = np.full((len(hops), len(labels)), np.nan)
    for i, r in enumerate(hops):
        p = get(r, "probs")
        if get(r, "is_speech") and p:
            probs[i] = [p.get(lab, 0.0) for lab in labels]
    utts = [(float(get(r, "start_s")), float(get(r, "end_s")), get(r, "label"), float(get(r, "confidence")))
            for r in results if get(r, "kind") == "utterance"]
    return {"spans": spans, "probs": probs, "utterances": utts}


def plot_timeline(results, labels: Sequence[str], path, title: str = "") -> Path:
    """A session as a picture: above, each emotion's share of every hop's answer (stacked, blank
    in silence); below, every utterance as a bar in its label's colour, with label and confidence."""
    plt = pyplot()
    s = timeline_series(results, labels)
    colours = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    end = max([float(s["spans"][:, 1].max()) if len(s["spans"]) else 0.0] + [u[1] for u in s["utterances"]] + [1.0])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(40.0, max(8.0, end / 4)), 4.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    # each hop is two points with the same values, so the fill is flat over the hop
    x = s["spans"].reshape(-1)
    speech = np.repeat(~np.isnan(s["probs"]).any(axis=1), 2)
    low = np.zeros(len(x))
    for k, lab in enumerate(labels):
        high = low + np.nan_to_num(np.repeat(s["probs"][:, k], 2))
        if len(x):
            top.fill_between(x, low, high, where=speech, color=colours[lab], linewidth=0, label=lab)
        low = high
    top.set_ylim(0, 1)
    top.set_ylabel("probability per hop")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    top.set_title(title, fontsize=9)
    for start, stop, lab, conf in s["utterances"]:
        bottom.axvspan(start, stop, color=colours.get(lab, "grey"), alpha=0.8, linewidth=0)
        bottom.text((start + stop) / 2, 0.5, f"{lab}\n{conf:.2f}", ha="center", va="center", fontsize=7)
    bottom.set_yticks([])
    bottom.set_ylabel("utterances", fontsize=8)
    bottom.set_xlim(0, end)
    bottom.set_xlabel("time (s)")
    fig.tight_layout()
    return save_figure(fig, path)


def latency_png(series: Sequence[Tuple[str, Sequence[float]]], title: str, path: Path) -> Path:
    """One histogram per artifact on a shared log-time axis, with p50 and p99 marked."""
    plt = pyplot()
    n = len(series)
    cols = 3 if n > 4 else max(1, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    allv = np.concatenate([np.asarray(v, float) for _, v in series])
    lo, hi = max(allv.min(), 1e-3), allv.max()
    bins = np.geomspace(lo, hi * 1.01, 40)
    for ax, (label, v) in zip(axes.flat, series):
        v = np.asarray(v, float)
        ax.hist(np.clip(v, lo, None), bins=bins, color="#4477aa")
        for q, style in ((50, "-"), (99, "--")):
            ax.axvline(np.percentile(v, q), color="#cc3311", ls=style, lw=1, label=f"p{q} {np.percentile(v, q):.3g} ms")
        ax.set_xscale("log")
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("ms per call", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))   # keep the title clear of row 1
    return save_figure(fig, path, dpi=110)
