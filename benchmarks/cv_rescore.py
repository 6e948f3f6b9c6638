"""Score a finished `edgeser evaluate --cv` run's fold models again, with the adaptation
protocols of `evaluate --speaker-adapt`: unadapted, per test speaker (transductive) and
enrolment (statistics from the other half of each test speaker's clips). For runs made before
`evaluate` reported enrolment; every fold model scores its own test speakers only.

    python benchmarks/cv_rescore.py runs/cv_ravdess --json benchmarks/results/cv_rescore_ravdess.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the --out folder of `edgeser evaluate --cv`")
    ap.add_argument("--checkpoint", default="best.pt", help="the fold model to score: best.pt or last.pt")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from edgeser.export.clips import corpus_root
    from edgeser.train.checkpoint import load_model
    from edgeser.train.data import AudioCache, read_corpus
    from edgeser.train.engine import predict_probs
    from edgeser.train.metrics import report
    from edgeser.train.pipeline import adapted_probs

    torch.set_num_threads(1)
    cv = json.loads((args.run / "cv.json").read_text())
    labels = cv["pooled"]["labels"]
    cache = AudioCache()
    speaker_of, roots = {}, set()
    names = {"unadapted": "unadapted", "speaker_adapted": "per test speaker (transductive)",
             "enrolled": "enrolment (not transductive)"}
    y, preds = [], {name: [] for name in names.values()}
    for fold in cv["folds"]:
        model, _ = load_model(args.run / f"fold{fold['fold']}" / args.checkpoint)
        for root in {corpus_root(Path(p)) for p in fold["paths"]} - roots:
            roots.add(root)
            speaker_of.update({c.path: c.speaker for c in read_corpus(str(root))})
        audio = [cache.get(p) for p in fold["paths"]]
        speakers = [speaker_of.get(p, "?") for p in fold["paths"]]
        y += fold["y_true"]
        probs = {"unadapted": predict_probs(model, audio), **adapted_probs(model, audio, speakers)}
        for key, p in probs.items():
            preds[names[key]] += p.argmax(1).tolist()
        print(f"fold {fold['fold']}: {len(audio)} clips, speakers {', '.join(sorted(set(speakers)))}", flush=True)
    rows = {name: report(y, p, labels) for name, p in preds.items()}
    for name, r in rows.items():
        print(f"  {name:36s} UA {r['UA']:.1%}  WA {r['WA']:.1%}  macro-F1 {r['macro_F1']:.1%}")
    if args.json:
        write_json({"run": str(args.run), "checkpoint": args.checkpoint, "cv_command": cv.get("command", ""), "clips": len(y),
                    "command": "python " + " ".join(sys.argv),
                    "rows": {k: {m: v[m] for m in ("UA", "WA", "macro_F1")} for k, v in rows.items()}}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
