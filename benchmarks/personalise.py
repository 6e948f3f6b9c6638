"""A model personalised on a few labelled clips of one voice, against the model as it came.

For each speaker the checkpoint held out (the bundled model: EmoDB 15, RAVDESS 01, 07, 10, 16),
N clips of every emotion the model knows (fewer where the speaker has fewer, always leaving one
to score) fine-tune the checkpoint exactly as a user would (`edgeser train --data MINE --init CKPT
--qat`, the fine-tune's fixed recipe below, never tuned on these speakers); the speaker's other
clips are scored by the fine-tuned model, by the checkpoint itself, and by the checkpoint balanced
on the same clips without their labels (`train.engine.balance_classes`, what enrolment does; PyTorch,
one speed).
Several draws of the N clips per speaker; UA per speaker, then the mean over speakers.

    python benchmarks/personalise.py --json benchmarks/results/personalise_bundled_v2.json \\
        --png benchmarks/results/personalise_bundled_v2.png
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, write_json  # noqa: E402

# the QAT fine-tune's own step (scripts/build_default_model.sh), long enough for a handful of clips
RECIPE = ["--qat", "--epochs", "20", "--lr", "3e-4", "--mixup", "0", "--batch-size", "8", "--val-fraction", "0",
          "--threads", "1"]


def draw(clips, per_label: int, rng: np.random.Generator):
    """(fine-tune clips, scored clips): per label, per_label clips drawn (at most all but one)."""
    by = {}
    for c in clips:
        by.setdefault(c.label, []).append(c)
    tune, score = [], []
    for lab in sorted(by):
        group = by[lab]
        k = min(per_label, len(group) - 1)
        pick = set(rng.choice(len(group), k, replace=False).tolist()) if k > 0 else set()
        tune += [c for i, c in enumerate(group) if i in pick]
        score += [c for i, c in enumerate(group) if i not in pick]
    return tune, score


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "bundle-qat.pt"))
    ap.add_argument("--data", default=None, help="score this corpus's speakers instead of the held-out ones")
    ap.add_argument("--per-label", default="1,2,4", help="clips of each emotion to fine-tune on")
    ap.add_argument("--draws", type=int, default=2, help="random draws of those clips per speaker")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from edgeser.cli import main as edgeser
    from edgeser.export.clips import heldout
    from edgeser.train.checkpoint import load_checkpoint, load_model
    from edgeser.train.data import AudioCache, write_manifest
    from edgeser.train.engine import balance_classes, predict_probs
    from edgeser.train.metrics import report

    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    base, _ = load_model(args.checkpoint)
    labels = list(base.cfg.labels)
    held = heldout(ckpt, labels, data=args.data)
    speakers = sorted({c.speaker for c in held.clips})
    cache = AudioCache()
    sizes = [int(v) for v in args.per_label.split(",")]

    def ua(model, clips):
        p = predict_probs(model, [cache.get(c.path) for c in clips])
        return report([labels.index(c.label) for c in clips], p.argmax(1).tolist(), labels)["UA"]

    rows = {n: {} for n in sizes}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for spk in speakers:
            mine = [c for c in held.clips if c.speaker == spk]
            for n in sizes:
                for d in range(args.draws):
                    tune, score = draw(mine, n, np.random.default_rng([d, n, len(mine)]))
                    run = Path(tmp) / f"{spk.replace(':', '_')}_{n}_{d}"
                    write_manifest(run / "data", tune)
                    try:
                        edgeser(["train", "--data", str(run / "data"), "--init", args.checkpoint, *RECIPE,
                                 "--out", str(run / "out")])
                    except SystemExit as e:     # click ends every command so
                        if e.code:
                            raise
                    tuned, _ = load_model(run / "out" / "last.pt")
                    r = {"tuned_clips": len(tune), "scored_clips": len(score),
                         "as_shipped": ua(base, score), "personalised": ua(tuned, score),
                         "balanced": ua(balance_classes(base, [cache.get(c.path) for c in tune]), score)}
                    rows[n].setdefault(spk, []).append(r)
                    print(f"{spk} {n}/label draw {d}: {len(tune)} clips tune, {len(score)} scored: UA "
                          f"{r['as_shipped']:.1%} -> {r['personalised']:.1%} (balanced, no labels: "
                          f"{r['balanced']:.1%}; {time.time() - t0:.0f} s)", flush=True)
    summary = []
    keys = ("as_shipped", "balanced", "personalised")
    print(f"\n{'clips per emotion':>17} {'tuned on':>9} {'as shipped':>11} {'balanced':>9} {'personalised':>13}")
    for n in sizes:
        per = {s: {k: float(np.mean([r[k] for r in v])) for k in (*keys, "tuned_clips")}
               for s, v in rows[n].items()}
        row = {"per_label": n, **{k: float(np.mean([p[k] for p in per.values()])) for k in (*keys, "tuned_clips")},
               "speakers": per}
        summary.append(row)
        print(f"{n:17d} {row['tuned_clips']:9.1f} {row['as_shipped']:11.1%} {row['balanced']:9.1%} "
              f"{row['personalised']:13.1%}")
    if args.json:
        write_json({"checkpoint": args.checkpoint, "source": held.source, "speakers": speakers,
                    "recipe": RECIPE, "draws": args.draws, "rows": summary, "runs": {str(k): v for k, v in rows.items()},
                    "command": "python " + " ".join(sys.argv)}, args.json)
    if args.png:
        plot(summary, args.png)
    return 0


def plot(summary, path):
    from edgeser.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    n = [r["per_label"] for r in summary]
    ax.plot(n, [100 * r["personalised"] for r in summary], "o-", label="personalised (mean over speakers)")
    ax.plot(n, [100 * r["balanced"] for r in summary], "^:", label="balanced on the same clips, no labels")
    ax.plot(n, [100 * r["as_shipped"] for r in summary], "s--", label="as shipped, same clips")
    for r in summary:
        for s, p in r["speakers"].items():
            ax.plot([r["per_label"]], [100 * p["personalised"]], ".", color="grey", alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xticks(n)
    ax.set_xticklabels([str(v) for v in n])
    ax.set_xlabel("labelled clips of each emotion from the speaker")
    ax.set_ylabel("UA on the speaker's other clips (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("one unseen voice: fine-tuned on a few of its clips (grey: each speaker)", fontsize=9)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
