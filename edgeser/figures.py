"""Pictures: the atomic PNG writer every figure goes through, `listen --plot`'s timeline and
`bench --plot`'s latency histograms.

matplotlib is imported inside the functions (the `plot` extra); nothing here loads it at import.
"""
from __future__ import annotations

import math
from array import array
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import click
import numpy as np

from .files import replacing

PLOT_EXTRA = 'pip install "edgeser[plot]"'
PLOT_MISSING = f"plotting needs matplotlib: {PLOT_EXTRA}"


class PlotUnavailable(click.ClickException):
    """matplotlib is not installed; the message names the extra. A ClickException: a command
    that meets it ends with its one line."""


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on a Pi or in CI)."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(PLOT_MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Write a figure atomically (a half-written PNG never replaces a good one) and close it."""
    plt = pyplot()
    path = Path(path)
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix[1:] or "png")
    finally:
        plt.close(fig)
    return path


class Timeline:
    """What the timeline draws, gathered result by result as a session goes (Result objects or
    their dicts): hop edges, per-hop probabilities (NaN where the hop was silence) and utterances as
    (start, end, label, confidence). Kept as packed numbers, not results: about 0.3 MB an hour of
    hops where the results themselves grew a session by 4 MB an hour."""

    def __init__(self, labels: Sequence[str]):
        self.labels = list(labels)
        self._spans = array("d")
        self._probs = array("f")
        self.utterances: List[Tuple[float, float, str, float]] = []

    def add(self, r) -> None:
        def get(k):
            return r[k] if isinstance(r, dict) else getattr(r, k)

        kind = get("kind")
        if kind == "hop":
            self._spans.extend((float(get("start_s")), float(get("end_s"))))
            p = get("probs")
            self._probs.extend([p.get(lab, 0.0) for lab in self.labels] if get("is_speech") and p
                               else [math.nan] * len(self.labels))
        elif kind == "utterance":
            self.utterances.append((float(get("start_s")), float(get("end_s")), get("label"), float(get("confidence"))))

    def series(self) -> Dict:
        spans = np.array(self._spans, np.float64).reshape(-1, 2)       # copies: the session may go on adding
        probs = np.array(self._probs, np.float64).reshape(-1, len(self.labels))
        return {"spans": spans, "probs": probs, "utterances": list(self.utterances)}


def timeline_series(results, labels: Sequence[str]) -> Dict:
    """Timeline.series of a list of results."""
    t = Timeline(labels)
    for r in results:
        t.add(r)
    return t.series()


MAX_COLUMNS = 400      # hop columns drawn at most; a longer session is drawn in bins of several hops
MAX_NAMED = 40         # utterances named on the picture at most; more are colour only


def binned(spans: np.ndarray, probs: np.ndarray, end_s: float, columns: int = MAX_COLUMNS):
    """(spans, probs) of at most `columns` equal bins over [0, end_s]: each bin the mean answer of
    the speech hops whose middle falls in it (NaN where none did)."""
    if len(spans) <= columns:
        return spans, probs
    edges = np.linspace(0.0, end_s, columns + 1)
    which = np.clip(np.searchsorted(edges, spans.mean(axis=1), side="right") - 1, 0, columns - 1)
    speech = ~np.isnan(probs).any(axis=1)
    total = np.zeros((columns, probs.shape[1]))
    np.add.at(total, which[speech], probs[speech])
    count = np.bincount(which[speech], minlength=columns)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return np.stack([edges[:-1], edges[1:]], axis=1), mean


def plot_timeline(results, labels: Sequence[str], path, title: str = "", min_confidence: float = 0.0) -> Path:
    """A session as a picture: above, each emotion's share of every hop's answer (stacked, blank
    in silence; a long session in up to MAX_COLUMNS bins, each its speech hops' mean); below,
    every utterance as a bar in its label's colour, named with its confidence while they are few
    (under `min_confidence`: grey and hatched, "unsure" above the best guess, as listen prints it)."""
    plt = pyplot()
    s = results.series() if isinstance(results, Timeline) else timeline_series(results, labels)
    colours = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    end = max([float(s["spans"][:, 1].max()) if len(s["spans"]) else 0.0] + [u[1] for u in s["utterances"]] + [1.0])
    spans, probs = binned(s["spans"], s["probs"], end)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(16.0, max(8.0, end / 4)), 4.2), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    # each column is two points with the same values, so the fill is flat over it
    x = spans.reshape(-1)
    speech = np.repeat(~np.isnan(probs).any(axis=1), 2)
    low = np.zeros(len(x))
    for k, lab in enumerate(labels):
        high = low + np.nan_to_num(np.repeat(probs[:, k], 2))
        if len(x):
            top.fill_between(x, low, high, where=speech, color=colours[lab], linewidth=0)
        low = high
    top.set_ylim(0, 1)
    top.set_ylabel("probability per hop" if len(spans) == len(s["spans"]) else
                   f"mean per {spans[0, 1] - spans[0, 0]:.0f} s", fontsize=9)
    # every label's colour, also for a session stopped before its first hop
    from matplotlib.patches import Patch
    top.legend(handles=[Patch(color=colours[lab], label=lab) for lab in labels], loc="upper left",
               bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    top.set_title(title, fontsize=9)
    named = len(s["utterances"]) <= MAX_NAMED
    groups: Dict[Tuple[str, bool], list] = {}
    for start, stop, lab, conf in s["utterances"]:
        unsure = conf < min_confidence
        groups.setdefault((lab, unsure), []).append((start, stop - start))
        if named:
            bottom.text((start + stop) / 2, 0.5, f"unsure\n({lab}) {conf:.2f}" if unsure else f"{lab}\n{conf:.2f}",
                        ha="center", va="center", fontsize=7)
    # one collection per colour: a day's thousands of utterances drawn one by one took most of a minute
    for (lab, unsure), bars in groups.items():
        bottom.broken_barh(bars, (0, 1), facecolors="lightgrey" if unsure else colours.get(lab, "grey"), alpha=0.8,
                           linewidth=0, hatch="//" if unsure else None, edgecolor="grey")
    bottom.set_ylim(0, 1)
    bottom.set_yticks([])
    bottom.set_ylabel("utterances", fontsize=8)
    bottom.set_xlim(0, end)
    unit, per = ("h", 3600.0) if end >= 3 * 3600 else ("min", 60.0) if end >= 600 else ("s", 1.0)
    if per > 1:     # ticks at whole minutes or hours, not at 0-21600 s
        from matplotlib.ticker import FuncFormatter, MultipleLocator
        step = next(k * 10 ** e for e in range(6) for k in (1, 2, 5) if k * 10 ** e >= end / per / 10)
        bottom.xaxis.set_major_locator(MultipleLocator(step * per))
        bottom.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / per:g}"))
    bottom.set_xlabel(f"time ({unit})")
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
