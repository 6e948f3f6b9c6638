"""How far an utterance's confidence can be trusted: accuracy against coverage on unseen voices.

Every held-out clip of the export's checkpoint (or of --data) goes through `listen`'s streaming
path (`predict_clip`, as `edgeser listen --input FILE` hears it, the default five playback
speeds); each utterance it holds is scored against the clip's label. For every confidence
threshold (`listen --min-confidence`): the share of utterances answered, and WA and UA among
them. A device that acts on an emotion only when sure trades answers for accuracy along this
curve.

    python benchmarks/confidence.py --json benchmarks/results/confidence_bundled_v2.json \\
        --png benchmarks/results/confidence_bundled_v2.png
    python benchmarks/confidence.py --model runs/mine --checkpoint runs/mine.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, speeds_arg, write_json  # noqa: E402

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def coverage_rows(y, pred, conf, labels, thresholds=THRESHOLDS):
    """Per threshold: utterances at or above it, their share, WA and UA among them (UA over the
    classes that still have an utterance answered)."""
    from edgeser.train.metrics import report

    y, pred, conf = np.asarray(y), np.asarray(pred), np.asarray(conf)
    rows = []
    for t in thresholds:
        keep = conf >= t
        row = {"min_confidence": t, "answered": int(keep.sum()), "coverage": float(keep.mean()) if len(y) else 0.0}
        if keep.any():
            r = report(y[keep].tolist(), pred[keep].tolist(), labels)
            row.update(WA=r["WA"], UA=r["UA"], classes=sum(1 for c in r["per_class"].values() if c["support"]))
        rows.append(row)
    return rows


def reliability(y, pred, conf, edges=(0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)):
    """Per confidence bin: utterances, their mean confidence and the share right; and the expected
    calibration error (the bins' |confidence - accuracy| weighted by their utterances): how far a
    confidence can be read as the chance the answer is right."""
    y, pred, conf = np.asarray(y), np.asarray(pred), np.asarray(conf)
    bins, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf >= lo) & (conf < hi)
        if m.any():
            acc, mean = float((y[m] == pred[m]).mean()), float(conf[m].mean())
            bins.append({"from": lo, "to": min(hi, 1.0), "utterances": int(m.sum()), "confidence": mean, "right": acc})
            ece += m.sum() / len(y) * abs(acc - mean)
    return bins, float(ece)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="export folder (default: the bundled model)")
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "bundle-qat.pt"),
                    help="the export's checkpoint: where its held-out speakers are recorded")
    ap.add_argument("--data", default=None, help="score this corpus's speakers instead of the held-out ones")
    ap.add_argument("--speeds", type=speeds_arg, default=None, metavar="S1,S2,..",
                    help="playback speeds (default: listen's)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None, help="accuracy against coverage, with the thresholds marked")
    args = ap.parse_args(argv)

    from edgeser.export.clips import heldout
    from edgeser.runtime.recognizer import load
    from edgeser.speed import DEFAULT_SPEEDS
    from edgeser.train.checkpoint import load_checkpoint

    speeds = list(args.speeds or DEFAULT_SPEEDS)
    rec = load(args.model)
    labels = rec.labels
    data = heldout(load_checkpoint(args.checkpoint), labels, data=args.data)
    y, pred, conf, no_speech = [], [], [], 0
    for clip, truth in zip(data.clips, data.y.tolist()):
        utts = rec.predict_clip(clip.path, speeds=speeds).utterances
        no_speech += not utts
        for u in utts:
            y.append(truth)
            pred.append(labels.index(u.label))
            conf.append(u.confidence)
    rows = coverage_rows(y, pred, conf, labels)
    print(f"{rec.name} ({rec.format} {rec.precision}) on {data.source}: {len(data.clips)} clips, {len(y)} "
          f"utterances ({no_speech} clips without speech left out), speeds {','.join(f'{s:g}' for s in speeds)}")
    print(f"{'min confidence':>14} {'answered':>9} {'coverage':>9} {'WA':>7} {'UA':>7}")
    for r in rows:
        print(f"{r['min_confidence']:14.1f} {r['answered']:9d} {r['coverage']:9.1%} "
              + (f"{r['WA']:7.1%} {r['UA']:7.1%}" if "WA" in r else f"{'-':>7} {'-':>7}"))
    bins, ece = reliability(y, pred, conf)
    print("confidence bins: " + ", ".join(f"{b['from']:.1f}-{b['to']:.1f}: {b['utterances']} at mean "
                                          f"{b['confidence']:.2f}, {b['right']:.0%} right" for b in bins))
    print(f"expected calibration error {ece:.3f}")
    if args.json:
        write_json({"reliability": bins, "ece": ece, "model": rec.name, "backend": rec.format, "precision": rec.precision, "source": data.source,
                    "clips": len(data.clips), "utterances": len(y), "no_speech_clips": no_speech,
                    "speeds": speeds, "labels": labels, "rows": rows,
                    "y_true": y, "y_pred": pred, "confidence": [round(c, 4) for c in conf],
                    "command": "python " + " ".join(sys.argv)}, args.json)
    if args.png:
        name = args.model or "the bundled model"
        plot(rows, args.png, f"{name} ({rec.format} {rec.precision}): {len(y)} utterances of unseen speakers")
    return 0


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeser.figures import save_figure

    rows = [r for r in rows if "WA" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    cov = [100 * r["coverage"] for r in rows]
    for key, style in (("UA", "o-"), ("WA", "s--")):
        ax.plot(cov, [100 * r[key] for r in rows], style, label=key)
    for r in rows:
        ax.annotate(f"≥{r['min_confidence']:.1f}", (100 * r["coverage"], 100 * r["UA"]),
                    textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("utterances answered (%)")
    ax.set_ylabel("accuracy among them (%)")
    ax.set_xlim(100, 0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
