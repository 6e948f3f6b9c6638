"""How much of a voice's speech the model gives its most frequent class: where the note of `enrol`
and `listen --learn-voice` on a dominant class (`edgeser.balance.DOMINANT`) should start. Per test
speaker of cross-validation reports (`edgeser evaluate --cv`, which keep each clip's probabilities):
the mean answer over all the speaker's clips (speech of every emotion) and over a subset mostly of
some labels (`enrol_runtime.py --mostly`'s draw), each class's share in even shares (1/K).

    python benchmarks/voice_dominance.py runs/xp/ravdess_lr1e-3/cv.json --mostly neutral,calm --mostly-share 0.75
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_json  # noqa: E402
from enrol_runtime import mostly  # noqa: E402


def top_shares(probs, speakers, labels) -> list:
    """[(speaker, label, even shares)] of each speaker's most frequent class in the mean answer."""
    import numpy as np

    out = []
    for spk in sorted(set(speakers)):
        mean = np.mean([p for p, s in zip(probs, speakers) if s == spk], axis=0)
        out.append((spk, labels[int(np.argmax(mean))], float(np.max(mean) * len(labels))))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", type=Path, nargs="+", help="cv.json of `edgeser evaluate --cv`")
    ap.add_argument("--mostly", default="neutral,calm", metavar="LABEL,..")
    ap.add_argument("--mostly-share", type=float, default=0.75, metavar="F")
    ap.add_argument("--seeds", type=int, default=3, help="draws of the mostly subset per speaker")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    every, skewed = [], []
    for path in args.reports:
        d = json.loads(path.read_text())
        labels = d["pooled"]["labels"]
        for f in d["folds"]:
            if "probs" not in f:
                raise SystemExit(f"{path}: fold {f['fold']} keeps no per-clip probabilities")
            every += top_shares(f["probs"], f["speakers"], labels)
            classes = [labels.index(v) for v in args.mostly.split(",")]
            for seed in range(args.seeds):
                keep = mostly(f["y_true"], f["speakers"], classes, args.mostly_share, seed)
                skewed += top_shares([f["probs"][i] for i in keep], [f["speakers"][i] for i in keep], labels)
    rows = {"every emotion": every, f"{args.mostly_share:.0%} {args.mostly}": skewed}
    for name, r in rows.items():
        v = sorted(x[2] for x in r)
        print(f"{name:28s} {len(v):3d} voices: most frequent class {v[0]:.2f} to {v[-1]:.2f} even shares "
              f"(median {v[len(v) // 2]:.2f}); over 2.5: {sum(x > 2.5 for x in v)}")
    if args.json:
        write_json({"command": "python " + " ".join(sys.argv), "reports": [str(p) for p in args.reports],
                    "rows": {k: [{"speaker": s, "label": lab, "even_shares": x} for s, lab, x in r]
                             for k, r in rows.items()}}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
