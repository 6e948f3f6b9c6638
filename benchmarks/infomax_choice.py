"""How `--adapt-steps` was chosen: enrolled UA of trained models under variants of unlabelled
fine-tuning on each test speaker's enrolment half (the `evaluate --speaker-adapt` enrolled
protocol: batch-norm statistics from one half of the speaker's clips, the other half scored, and
the other way round), after the statistics.

A variant is `adabn` (statistics only) or `OBJECTIVE:PARAMS:STEPS:LR`:
- OBJECTIVE `tent`: mean window entropy; `im`: minus the entropy of the mean answer too
  (information maximisation, what `engine.infomax_adapt` lowers);
- PARAMS `bn`: the batch-norm weights only; `all`: every weight but the classifier;
- full-batch Adam steps at learning rate LR.
`im:all:10:1e-4` is `engine.infomax_adapt` with its defaults, the landed choice.
`shot:all:STEPS:LR:BETA` adds SHOT's second term (Liang et al., 2020): each window's pseudo-label
is its nearest class centroid (cosine) among the embeddings of the speaker's windows, centroids
weighted by the answers and then refitted once on the hard labels; BETA times the cross-entropy
against those labels joins the information-maximisation loss; labels are refreshed every step.

    python benchmarks/infomax_choice.py runs/noval120 --variants adabn,im:bn:10:1e-3,im:all:10:1e-4
    python benchmarks/infomax_choice.py --model runs/xc_sb_sp2_s0/best.pt --data ../shared/data/emodb
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_json  # noqa: E402


def tuned(model, audio, variant):
    """The model after batch-norm statistics on `audio`, then the variant's steps on it."""
    import torch

    from edgeser.train.engine import adapt_batchnorm, eval_windows, infomax_adapt

    m = adapt_batchnorm(model, audio)
    if variant == "adabn":
        return m
    objective, params, steps, lr, *beta = variant.split(":")
    if (objective == "shot") != bool(beta):
        raise SystemExit(f"variant {variant}: BETA (a fifth field) goes with shot, and only with it")
    if (objective, params) == ("im", "all"):
        return infomax_adapt(m, audio, int(steps), float(lr))
    m = copy.deepcopy(m).eval()
    bn = torch.nn.modules.batchnorm._BatchNorm
    chosen = ([p for mod in m.modules() if isinstance(mod, bn) for p in mod.parameters()] if params == "bn"
              else [p for name, p in m.named_parameters() if not name.startswith("head.classifier.")])
    for p in m.parameters():
        p.requires_grad_(False)
    for p in chosen:
        p.requires_grad_(True)
    W = torch.from_numpy(np.concatenate([eval_windows(x, m.cfg.window_samples) for x in audio]))
    opt = torch.optim.Adam(chosen, lr=float(lr))
    for _ in range(int(steps)):
        logits, emb = m(W)
        P = torch.softmax(logits, -1)
        loss = -(P * torch.log(P + 1e-8)).sum(1).mean()
        if objective in ("im", "shot"):
            mean = P.mean(0)
            loss = loss + (mean * torch.log(mean + 1e-8)).sum()
        if objective == "shot":
            loss = loss + float(beta[0]) * torch.nn.functional.cross_entropy(logits, pseudo_labels(emb, P))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m


def pseudo_labels(emb, P):
    """SHOT's self-supervised labels: nearest centroid by cosine, centroids first weighted by the
    answers P, then refitted on those hard labels."""
    import torch

    f = torch.nn.functional.normalize(emb.detach(), dim=1)
    weights = P.detach()
    for _ in range(2):
        centroids = torch.nn.functional.normalize(weights.T @ f / (weights.sum(0)[:, None] + 1e-8), dim=1)
        labels = (f @ centroids.T).argmax(1)
        weights = torch.nn.functional.one_hot(labels, P.shape[1]).to(f)
    return labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="the --out folder(s) of `edgeser evaluate --cv`")
    ap.add_argument("--model", type=Path, action="append", default=[], help="a checkpoint to score on --data")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--variants", default="adabn,tent:bn:10:1e-3,im:bn:10:1e-3,im:all:10:1e-4")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if bool(args.runs) == bool(args.model) or bool(args.model) != bool(args.data):
        ap.error("give either cross-validation run folders, or --model CKPT (one or more) with --data PATH")

    import torch

    from cv_rescore import cv_groups, model_group
    from edgeser.train.checkpoint import model_from_checkpoint
    from edgeser.train.engine import enrolment_pairs, predict_probs
    from edgeser.train.metrics import report
    from edgeser.train.pipeline import decide

    torch.set_num_threads(1)
    sources = [str(s) for s in (args.runs or args.model)]
    labels, _, groups = cv_groups(args.runs, "best.pt") if args.runs else model_group(args.model, args.data)
    variants = args.variants.split(",")
    names = sources + (["ensemble"] if len(sources) > 1 else [])
    y, preds = [], {(s, v): [] for s in names for v in variants}
    for g in groups:
        y += g["y"]
        total = {v: 0.0 for v in variants}
        for name, ck in zip(sources, g["models"]):
            model = model_from_checkpoint(ck)
            for v in variants:
                out = np.zeros((len(g["audio"]), model.cfg.n_classes), np.float32)
                for fit, score in enrolment_pairs(g["speakers"]):
                    m = tuned(model, [g["audio"][i] for i in fit], v)
                    out[list(score)] = predict_probs(m, [g["audio"][i] for i in score])
                preds[(name, v)] += decide(out, g["allowed"])
                total[v] = total[v] + out
        for v in variants:
            if len(sources) > 1:
                preds[("ensemble", v)] += decide(np.asarray(total[v]), g["allowed"])
        print(g["name"], flush=True)
    rows = {}
    for (name, v), p in preds.items():
        rows.setdefault(name, {})[v] = report(y, p, labels)["UA"]
        print(f"{name:48s} {v:18s} enrolled UA {rows[name][v]:.1%}")
    if args.json:
        write_json({"sources": sources, "data": str(args.data) if args.data else None,
                    "command": "python " + " ".join(sys.argv), "protocol": "enrolled UA", "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
