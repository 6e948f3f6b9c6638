"""Latency distribution per artifact as a PNG (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

from edgeser.figures import pyplot, save_figure


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
