"""What `edgeser adapt` buys on a new corpus: batch-norm statistics re-estimated on unlabelled
audio, never on the clips that are scored.

Two protocols, each against the unadapted model on the very same clips:
- other speakers: the corpus' speakers in two halves; adapt on one half's clips, score the other
  half, and the other way round (a device deployed among new people in a new place);
- enrolment: per speaker, adapt on half of that speaker's clips (alternate clips), score the other
  half, and the other way round (a device that heard its user talk for a few minutes).
`--steps N` adds both again with N steps of unlabelled fine-tuning after the statistics
(`edgeser adapt --steps N`).

    python benchmarks/adapt_enroll.py --model runs/xc/best.pt --data ../shared/data/emodb \
        --json benchmarks/results/adapt_enroll.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=0, help="also score both protocols with N fine-tuning steps")
    ap.add_argument("--balance", action="store_true",
                    help="also score both protocols with the classes balanced (after the --steps, if any)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from edgeser.export.clips import heldout
    from edgeser.train.checkpoint import load_model
    from edgeser.train.engine import Adaptation, enrolment_pairs, predict_probs, predict_probs_refit
    from edgeser.train.metrics import report

    torch.set_num_threads(1)
    model, ck = load_model(args.model)
    labels = list(model.cfg.labels)
    data = heldout(ck, labels, data=args.data)   # the corpus' clips of the model's labels, merged as it was
    clips, audio, y = data.clips, data.audio, data.y
    base = predict_probs(model, audio).argmax(1)
    speakers = sorted({c.speaker for c in clips})

    def adapted_predictions(pairs, stem_only=False, how=Adaptation()):
        """pairs: (adapt on these clip indices, score these) -> predictions for every scored clip."""
        return predict_probs_refit(model, audio, pairs, stem_only=stem_only, how=how).argmax(1)

    half = [speakers[: len(speakers) // 2], speakers[len(speakers) // 2:]]
    idx = [[i for i, c in enumerate(clips) if c.speaker in set(h)] for h in half]
    other = adapted_predictions([(idx[0], idx[1]), (idx[1], idx[0])])
    enrol_pairs = enrolment_pairs([c.speaker for c in clips])
    enrol = adapted_predictions(enrol_pairs)

    rows = {"unadapted": report(y, base, labels), "other speakers": report(y, other, labels),
            "enrolment (same speaker, other clips)": report(y, enrol, labels),
            # the filterbank's per-band statistics alone: what a runtime could correct without torch
            "other speakers, stem only": report(y, adapted_predictions(
                [(idx[0], idx[1]), (idx[1], idx[0])], stem_only=True), labels),
            "enrolment, stem only": report(y, adapted_predictions(enrol_pairs, stem_only=True), labels)}
    extras = ([(f"{args.steps} fine-tuning steps", Adaptation(args.steps))] if args.steps else []) \
        + ([(f"{args.steps} fine-tuning steps, balanced" if args.steps else "balanced", Adaptation(args.steps, True))]
           if args.balance else [])
    for name, how in extras:
        rows[f"other speakers, {name}"] = report(y, adapted_predictions(
            [(idx[0], idx[1]), (idx[1], idx[0])], how=how), labels)
        rows[f"enrolment, {name}"] = report(y, adapted_predictions(enrol_pairs, how=how), labels)
    print(f"{args.model} on {args.data}: {len(clips)} clips, {len(speakers)} speakers, labels {', '.join(labels)}")
    for name, r in rows.items():
        print(f"  {name:40s} UA {r['UA']:.1%}  WA {r['WA']:.1%}  macro-F1 {r['macro_F1']:.1%}")
    if args.json:
        write_json({"model": args.model, "data": args.data, "clips": len(clips), "speakers": speakers,
                    "halves": half, "command": "python " + " ".join(sys.argv),
                    "rows": {k: {m: v[m] for m in ("UA", "WA", "macro_F1")} for k, v in rows.items()}}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
