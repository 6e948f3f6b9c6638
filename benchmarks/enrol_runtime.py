"""Enrolment on the device path: `edgeser enrol` on half of each held-out speaker's clips, the
other half scored by the exported model through the streaming runtime (`predict_clip`, as
`edgeser listen --input` hears a file), with and without the balance; then the halves swapped.
No torch runs the model: it is the int8 (or fp32) export a device runs. Several --model: each
alone, then all of them as one ensemble (`edgeser listen --model A --model B ..`).

    python benchmarks/enrol_runtime.py                       # the bundled model, its held-out speakers
    python benchmarks/enrol_runtime.py --model runs/mine --checkpoint runs/mine.pt
    python benchmarks/enrol_runtime.py --model runs/xc_export --data ../shared/data/emodb
    python benchmarks/enrol_runtime.py --model A --model B --model C --checkpoint A.pt --data DIR
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import REPO, write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None,
                    help="export folder (default: the bundled model); repeat it for an ensemble")
    ap.add_argument("--checkpoint", default=str(REPO / "models" / "bundle-qat.pt"),
                    help="the export's checkpoint: where its held-out speakers are recorded")
    ap.add_argument("--data", default=None, help="score this corpus's speakers instead of the held-out ones")
    ap.add_argument("--backend", choices=["onnx", "tflite"], default=None)
    ap.add_argument("--precision", choices=["int8", "fp32"], default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from edgeser.export.clips import heldout
    from edgeser.runtime.recognizer import load
    from edgeser.train.checkpoint import load_checkpoint

    models = args.model or [None]
    recs = [load(m, backend=args.backend, precision=args.precision) for m in models]
    if len(recs) > 1:
        recs.append(load(models, backend=args.backend, precision=args.precision))
    labels = recs[0].labels
    data = heldout(load_checkpoint(args.checkpoint), labels, data=args.data)
    paths = [c.path for c in data.clips]
    y = data.y.tolist()
    speakers = [c.speaker for c in data.clips]
    out = []
    for rec in recs:
        t0 = time.time()
        rows, no_speech = score(rec, paths, y, speakers, labels)
        print(f"{rec.name} ({rec.format} {rec.precision}) on {data.source}: {len(paths)} clips, "
              f"{len(set(speakers))} speakers, {time.time() - t0:.0f} s")
        for name, r in rows.items():
            print(f"  {name:50s} UA {r['UA']:.1%}  WA {r['WA']:.1%}  macro-F1 {r['macro_F1']:.1%}")
        if no_speech:
            print(f"  ({no_speech} clips without speech count as wrong)")
        out.append({"model": rec.name, "backend": rec.format, "precision": rec.precision,
                    "no_speech_clips": no_speech,
                    "rows": {k: {m: v[m] for m in ("UA", "WA", "macro_F1")} for k, v in rows.items()}})
    if args.json:
        write_json({**(out[0] if len(out) == 1 else {"models": out}), "source": data.source,
                    "clips": len(paths), "speakers": sorted(set(speakers)),
                    "command": "python " + " ".join(sys.argv)}, args.json)
    return 0


def score(rec, paths, y, speakers, labels):
    """({protocol: report}, clips without speech) for one recognizer."""
    from edgeser.train.engine import enrolment_pairs
    from edgeser.train.metrics import report

    def answer(path):
        """The index of the clip's summary label (-1 where no speech was found)."""
        s = rec.predict_clip(path).summary
        return labels.index(s.label) if s is not None else -1

    plain = [answer(p) for p in paths]
    balanced = list(plain)
    for fit, scored in enrolment_pairs(speakers):
        bal, _ = rec.enrol([paths[i] for i in fit])
        rec.use_balance(bal)
        for i in scored:
            balanced[i] = answer(paths[i])
        rec.use_balance(None)
    rows = {"unbalanced": report(y, plain, labels),
            "enrolled (balance from the speaker's other clips)": report(y, balanced, labels)}
    return rows, int(sum(1 for v in plain if v < 0))


if __name__ == "__main__":
    sys.exit(main())
