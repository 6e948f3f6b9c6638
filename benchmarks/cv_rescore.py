"""Score trained models again, with the adaptation protocols of `evaluate --speaker-adapt`:
unadapted, per test speaker (transductive) and enrolment (statistics from the other half of each
test speaker's clips); alone, as an ensemble, and with test-time speed averaging.

Two sources of models:
- finished `edgeser evaluate --cv` runs: every fold model scores its own test speakers only.
  Several runs need the same folds (e.g. the same command with other `--seed`s).
- `--model CKPT` (repeatable) with `--data PATH`: checkpoints scored on a corpus as
  `evaluate --model` does (only the labels the model knows; across corpora, only predictions
  among the labels the test set has).

Several models are also scored as an ensemble: the mean of their clip probabilities.
`--speeds 0.9,1,1.1` averages each model over the test clips played at those speeds (test-time
augmentation; one pass per speed). `--adapt-steps N` adds N steps of unlabelled fine-tuning to the
adapted protocols (as `evaluate --speaker-adapt --adapt-steps N`), `--balance` then evens out the
classes on the same clips (as `evaluate --speaker-adapt --balance`); `--balance-only` balances
without the statistics (what `edgeser enrol` does on a device, without torch).

    python benchmarks/cv_rescore.py runs/cv_ravdess --json benchmarks/results/cv_rescore_ravdess.json
    python benchmarks/cv_rescore.py runs/a runs/b runs/c --checkpoint last.pt --speeds 0.9,1,1.1
    python benchmarks/cv_rescore.py --model runs/xc/best.pt --model runs/xc_s1/best.pt --data ../shared/data/emodb

`--vote` runs no model: it reads the predictions every run recorded in its cv.json and scores
their plurality vote (ties go to the first run's answer), in seconds, for any number of runs;
where every run also recorded its clip probabilities (runs of this release on), the ensemble of
their mean as well.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import speeds_arg, write_json  # noqa: E402

PROTOCOLS = {"unadapted": "unadapted", "speaker_adapted": "per test speaker (transductive)",
             "enrolled": "enrolment (not transductive)"}


def plurality(votes):
    """Per column, the most frequent row value; a tie goes to the tied value the first row holds,
    else to the smallest."""
    import numpy as np

    votes = np.asarray(votes)
    out = []
    for col in votes.T:
        counts = np.bincount(col)
        top = np.flatnonzero(counts == counts.max())
        out.append(int(col[0]) if col[0] in top else int(top[0]))
    return out


def vote(runs):
    """{protocol: (y_true, {run, 'vote of N' or 'ensemble of N': y_pred})} from the runs' recorded
    predictions, and from their recorded probabilities where all have them."""
    import numpy as np

    from edgeser.train.pipeline import FOLD_FIELDS, PROB_FIELDS

    cvs = load_runs(runs)
    out = {}
    for key, field in {"unadapted": "y_pred", **FOLD_FIELDS}.items():
        if not all(field in f for cv in cvs for f in cv["folds"]):
            continue   # a run evaluated without --speaker-adapt has no adapted predictions
        y = [v for f in cvs[0]["folds"] for v in f["y_true"]]
        preds = {str(r): [v for f in cv["folds"] for v in f[field]] for r, cv in zip(runs, cvs)}
        preds[f"vote of {len(runs)}"] = plurality(list(preds.values()))
        pf = PROB_FIELDS[key]
        if all(pf in f for cv in cvs for f in cv["folds"]):
            mean = sum(np.array([p for f in cv["folds"] for p in f[pf]]) for cv in cvs)
            preds[f"ensemble of {len(runs)}"] = mean.argmax(1).tolist()
        out[key] = (y, preds)
    return cvs[0]["pooled"]["labels"], [cv.get("command", "") for cv in cvs], out


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


def cv_groups(runs, checkpoint):
    """(labels, commands, groups): per fold, the fold models' checkpoints and the fold's test clips."""
    from edgeser.export.clips import corpus_root
    from edgeser.train.checkpoint import load_checkpoint
    from edgeser.train.data import AudioCache, read_corpus

    cvs = load_runs(runs)
    cache, speaker_of, roots, groups = AudioCache(), {}, set(), []
    for i, fold in enumerate(cvs[0]["folds"]):
        for root in {corpus_root(Path(p)) for p in fold["paths"]} - roots:
            roots.add(root)
            speaker_of.update({c.path: c.speaker for c in read_corpus(str(root))})
        groups.append({"name": f"fold {fold['fold']}",
                       "models": [load_checkpoint(run / f"fold{cv['folds'][i]['fold']}" / checkpoint)
                                  for run, cv in zip(runs, cvs)],
                       "audio": [cache.get(p) for p in fold["paths"]],
                       "speakers": [speaker_of.get(p, "?") for p in fold["paths"]],
                       "y": list(fold["y_true"]), "allowed": None})
    return cvs[0]["pooled"]["labels"], [cv.get("command", "") for cv in cvs], groups


def model_group(models, data):
    """One group: every model on the corpus at `data`, scored as `evaluate --model` scores it."""
    import numpy as np

    from edgeser.export.clips import heldout
    from edgeser.train.checkpoint import load_checkpoint

    cks = [load_checkpoint(m) for m in models]
    labels = list(cks[0]["model_config"]["labels"])
    for m, ck in zip(models[1:], cks[1:]):
        if list(ck["model_config"]["labels"]) != labels or ck.get("meta", {}).get("merges") != cks[0].get("meta", {}).get("merges"):
            raise SystemExit(f"error: {m}: its labels or merges differ from {models[0]}'s")
    d = heldout(cks[0], labels, data=str(data))
    return labels, [], [{"name": str(data), "models": cks, "audio": d.audio,
                         "speakers": [c.speaker for c in d.clips], "y": d.y.tolist(),
                         "allowed": np.array(sorted(set(d.y.tolist())))}]


def main_vote(args) -> int:
    from edgeser.train.metrics import report

    labels, commands, scored = vote(args.runs)
    rows = {}
    for key, (y, preds) in scored.items():
        print(PROTOCOLS[key])
        for name, p in preds.items():
            r = rows.setdefault(name, {})[PROTOCOLS[key]] = report(y, p, labels)
            print(f"  {name:48s} UA {r['UA']:.1%}  WA {r['WA']:.1%}  macro-F1 {r['macro_F1']:.1%}")
    if args.json:
        write_json({"runs": [str(r) for r in args.runs], "method": "plurality vote of recorded predictions; ensemble: mean of recorded probabilities",
                    "cv_commands": commands, "command": "python " + " ".join(sys.argv),
                    "rows": {n: {t: {m: r[m] for m in ("UA", "WA", "macro_F1")} for t, r in by.items()}
                             for n, by in rows.items()}}, args.json)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="*", help="the --out folder(s) of `edgeser evaluate --cv`")
    ap.add_argument("--model", type=Path, action="append", default=[], help="a checkpoint to score on --data (repeatable)")
    ap.add_argument("--data", type=Path, default=None, help="the corpus the --model checkpoints are scored on")
    ap.add_argument("--checkpoint", default="best.pt", help="the fold model of a run to score: best.pt or last.pt")
    ap.add_argument("--speeds", type=speeds_arg, default=[1.0],
                    help="comma-separated playback speeds to average over (default: 1)")
    ap.add_argument("--adapt-steps", type=int, default=0,
                    help="adapted protocols: steps of unlabelled fine-tuning after the statistics (as evaluate --adapt-steps)")
    ap.add_argument("--balance", action="store_true",
                    help="adapted protocols: then balance the classes on the same clips (as evaluate --balance)")
    ap.add_argument("--balance-only", action="store_true",
                    help="adapted protocols: balance the classes without re-estimating the statistics (what "
                         "`edgeser enrol` does on a device, without torch); implies --balance")
    ap.add_argument("--vote", action="store_true",
                    help="score the runs' recorded predictions as a plurality vote (no model is run)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if bool(args.runs) == bool(args.model) or bool(args.model) != bool(args.data):
        ap.error("give either cross-validation run folders, or --model CKPT (one or more) with --data PATH")
    for run in args.runs:
        if not (run / "cv.json").is_file():
            ap.error(f"{run}: no cv.json (not the --out folder of a finished `edgeser evaluate --cv`)")
    for m in args.model:
        if not m.is_file():
            ap.error(f"{m}: no such checkpoint")
    if args.vote:
        if args.model or len(args.runs) < 2 or args.speeds != [1.0] or args.adapt_steps or args.balance or args.balance_only:
            ap.error("--vote takes two or more cross-validation run folders, without --model, --speeds, "
                     "--adapt-steps or --balance")
        return main_vote(args)

    import numpy as np
    import torch

    from edgeser.train.checkpoint import model_from_checkpoint
    from edgeser.train.engine import Adaptation
    from edgeser.train.metrics import report
    from edgeser.train.pipeline import decide, scored_probs

    torch.set_num_threads(max(1, args.threads))
    how = Adaptation(args.adapt_steps, args.balance or args.balance_only, statistics=not args.balance_only)
    sources = [str(r) for r in args.runs] or [str(m) for m in args.model]
    labels, commands, groups = cv_groups(args.runs, args.checkpoint) if args.runs else model_group(args.model, args.data)
    scored = sources + ([f"ensemble of {len(sources)}"] if len(sources) > 1 else [])
    y, preds = [], {(m, p): [] for m in scored for p in PROTOCOLS}

    for g in groups:
        y += g["y"]
        total = {p: 0.0 for p in PROTOCOLS}
        for name, ck in zip(sources, g["models"]):
            model = model_from_checkpoint(ck)
            probs = scored_probs(model, g["audio"], g["speakers"], True, how, args.speeds)
            for key, p in probs.items():
                preds[(name, key)] += decide(p, g["allowed"])
                total[key] = total[key] + p
        if len(sources) > 1:
            for key, p in total.items():
                preds[(scored[-1], key)] += decide(np.asarray(p), g["allowed"])
        print(f"{g['name']}: {len(g['audio'])} clips, speakers {', '.join(sorted(set(g['speakers'])))}", flush=True)
    rows = {}
    for name in scored:
        print(name)
        for key, title in PROTOCOLS.items():
            r = rows.setdefault(name, {})[title] = report(y, preds[(name, key)], labels)
            print(f"  {title:36s} UA {r['UA']:.1%}  WA {r['WA']:.1%}  macro-F1 {r['macro_F1']:.1%}")
    if args.json:
        pick = {name: {t: {m: r[m] for m in ("UA", "WA", "macro_F1")} for t, r in by.items()} for name, by in rows.items()}
        write_json({"runs": sources, "data": str(args.data) if args.data else None, "checkpoint": args.checkpoint,
                    "speeds": args.speeds, **how.fields(), "cv_commands": commands, "clips": len(y),
                    "command": "python " + " ".join(sys.argv),
                    # single-run reports keep their earlier shape
                    "rows": pick[sources[0]] if len(sources) == 1 else pick}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
