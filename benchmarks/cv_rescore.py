"""Score finished `edgeser evaluate --cv` runs' fold models again, with the adaptation protocols
of `evaluate --speaker-adapt`: unadapted, per test speaker (transductive) and enrolment
(statistics from the other half of each test speaker's clips). Every fold model scores its own
test speakers only.

Several runs with the same folds (e.g. the same command with other `--seed`s) are also scored as
an ensemble: the mean of their fold models' clip probabilities. `--speeds 0.9,1,1.1` averages
each model over the test clips played at those speeds (test-time augmentation; costs one pass
per speed).

    python benchmarks/cv_rescore.py runs/cv_ravdess --json benchmarks/results/cv_rescore_ravdess.json
    python benchmarks/cv_rescore.py runs/a runs/b runs/c --checkpoint last.pt --speeds 0.9,1,1.1
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_json  # noqa: E402

PROTOCOLS = {"unadapted": "unadapted", "speaker_adapted": "per test speaker (transductive)",
             "enrolled": "enrolment (not transductive)"}


def speeds_arg(text: str):
    try:
        speeds = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speeds: not a list of numbers: {text!r}")
    if not speeds or any(not 0.5 <= s <= 2.0 for s in speeds):
        raise argparse.ArgumentTypeError(f"--speeds: each speed must lie in 0.5..2, got {text!r}")
    return speeds


def load_runs(runs):
    """The runs' cv.json reports; the folds must hold the same test clips in the same order."""
    cvs = [json.loads((run / "cv.json").read_text()) for run in runs]
    for run, cv in zip(runs[1:], cvs[1:]):
        if [f["paths"] for f in cv["folds"]] != [f["paths"] for f in cvs[0]["folds"]]:
            raise SystemExit(f"error: {run / 'cv.json'}: its folds differ from {runs[0] / 'cv.json'}'s; "
                             "an ensemble needs the same folds")
        if cv["pooled"]["labels"] != cvs[0]["pooled"]["labels"]:
            raise SystemExit(f"error: {run / 'cv.json'}: its labels differ from {runs[0] / 'cv.json'}'s")
    return cvs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="the --out folder(s) of `edgeser evaluate --cv`")
    ap.add_argument("--checkpoint", default="best.pt", help="the fold model to score: best.pt or last.pt")
    ap.add_argument("--speeds", type=speeds_arg, default=[1.0],
                    help="comma-separated playback speeds to average over (default: 1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    for run in args.runs:
        if not (run / "cv.json").is_file():
            ap.error(f"{run}: no cv.json (not the --out folder of a finished `edgeser evaluate --cv`)")

    import numpy as np
    import torch

    from edgeser.export.clips import corpus_root
    from edgeser.train.checkpoint import load_model
    from edgeser.train.data import AudioCache, change_speed, read_corpus
    from edgeser.train.engine import predict_probs
    from edgeser.train.metrics import report
    from edgeser.train.pipeline import adapted_probs

    torch.set_num_threads(max(1, args.threads))
    cvs = load_runs(args.runs)
    labels = cvs[0]["pooled"]["labels"]
    cache = AudioCache()
    speaker_of, roots = {}, set()
    members = [str(run) for run in args.runs]
    scored = members + ([f"ensemble of {len(members)}"] if len(members) > 1 else [])
    y, preds = [], {(m, p): [] for m in scored for p in PROTOCOLS}
    for i, fold in enumerate(cvs[0]["folds"]):
        for root in {corpus_root(Path(p)) for p in fold["paths"]} - roots:
            roots.add(root)
            speaker_of.update({c.path: c.speaker for c in read_corpus(str(root))})
        audio = [cache.get(p) for p in fold["paths"]]
        speakers = [speaker_of.get(p, "?") for p in fold["paths"]]
        y += fold["y_true"]
        total = {p: 0.0 for p in PROTOCOLS}
        for run, cv, name in zip(args.runs, cvs, members):
            model, _ = load_model(run / f"fold{cv['folds'][i]['fold']}" / args.checkpoint)
            probs = {p: 0.0 for p in PROTOCOLS}
            for speed in args.speeds:
                played = [change_speed(x, speed) for x in audio]
                for key, p in {"unadapted": predict_probs(model, played), **adapted_probs(model, played, speakers)}.items():
                    probs[key] = probs[key] + p / len(args.speeds)
            for key, p in probs.items():
                preds[(name, key)] += p.argmax(1).tolist()
                total[key] = total[key] + p
        if len(members) > 1:
            for key, p in total.items():
                preds[(scored[-1], key)] += np.asarray(p).argmax(1).tolist()
        print(f"fold {fold['fold']}: {len(audio)} clips, speakers {', '.join(sorted(set(speakers)))}", flush=True)
    rows = {}
    for name in scored:
        print(name)
        for key, title in PROTOCOLS.items():
            r = rows.setdefault(name, {})[title] = report(y, preds[(name, key)], labels)
            print(f"  {title:36s} UA {r['UA']:.1%}  WA {r['WA']:.1%}  macro-F1 {r['macro_F1']:.1%}")
    if args.json:
        pick = {name: {t: {m: r[m] for m in ("UA", "WA", "macro_F1")} for t, r in by.items()} for name, by in rows.items()}
        write_json({"runs": members, "checkpoint": args.checkpoint, "speeds": args.speeds,
                    "cv_commands": [cv.get("command", "") for cv in cvs], "clips": len(y),
                    "command": "python " + " ".join(sys.argv),
                    # single-run reports keep their earlier shape
                    "rows": pick[members[0]] if len(members) == 1 else pick}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
