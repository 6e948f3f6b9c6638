"""Where an utterance starts, to the sample: the same clip heard behind 1 s of silence plus 0 to
`--max-shift` extra samples, through the streaming path `listen` runs.

The runtime restarts the model at each utterance the voice detector opens, so an utterance is heard
the same wherever it falls on the detector's 20 ms grid; but the grid lies anywhere in the speech,
and the model's 100 ms frames see other samples when it moves. This says how much that moves the
answer, on clips the model did not train on.

    python benchmarks/frame_phase.py --model edgeser/models/default --speaker 15 --json benchmarks/results/frame_phase.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, write_json  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="export folder (default: the bundled model)")
    ap.add_argument("--data", type=Path, default=data_root() / "emodb")
    ap.add_argument("--speaker", default="15", help="the clips of this speaker (the bundled model's held-out EmoDB voice)")
    ap.add_argument("--max-shift", type=int, default=320, help="samples (320 = one 20 ms detector frame)")
    ap.add_argument("--step", type=int, default=40)
    ap.add_argument("--speeds", default="1;0.8,0.9,1,1.1,1.2", help="speed sets to compare, ';' between sets")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import edgeser
    from edgeser import labels as L
    from edgeser.audio import read_clip
    from edgeser.scoring import folder_truth

    rec = edgeser.load(args.model)
    merges = dict(rec.manifest.training.get("merges") or {})
    truth = {p: L.apply(lab, merges, rec.labels) for p, (lab, spk) in folder_truth(str(args.data)).items()
             if spk.split(":")[-1] == args.speaker}
    truth = {p: t for p, t in sorted(truth.items()) if t is not None}
    shifts = list(range(0, args.max_shift, args.step))
    report = {"model": str(args.model or "bundled"), "speaker": args.speaker, "clips": len(truth), "shifts": shifts,
              "sets": []}
    for spec in args.speeds.split(";"):
        speeds = tuple(float(s) for s in spec.split(","))
        labels, confs = [], []        # [clip][shift]
        for path in truth:
            x = read_clip(path)
            row_l, row_c = [], []
            for shift in shifts:
                y = np.concatenate([np.zeros(16000 + shift, np.float32), x, np.zeros(16000, np.float32)])
                s = rec.create_stream(speeds=speeds)
                utts = [r for r in s.accept_waveform(16000, y) + s.input_finished() if r.kind == "utterance"]
                best = max(utts, key=lambda u: u.end_s - u.start_s) if utts else None
                row_l.append(best.label if best else None)
                row_c.append(best.confidence if best else 0.0)
            labels.append(row_l)
            confs.append(row_c)
        t = list(truth.values())
        same = np.mean([len(set(r)) == 1 for r in labels])
        spread = np.array([max(c) - min(c) for c in confs])
        acc = [np.mean([labels[i][j] == t[i] for i in range(len(t))]) for j in range(len(shifts))]
        row = {"speeds": list(speeds), "same_label_at_every_shift": round(float(same), 4),
               "confidence_spread_median": round(float(np.median(spread)), 4),
               "confidence_spread_max": round(float(spread.max()), 4),
               "accuracy_by_shift": [round(float(a), 4) for a in acc]}
        report["sets"].append(row)
        print(f"speeds {spec:<22} same label at all {len(shifts)} shifts: {100 * same:5.1f}% of {len(t)} clips; "
              f"confidence spread median {row['confidence_spread_median']:.3f}, max {row['confidence_spread_max']:.3f}; "
              f"accuracy {100 * min(acc):.1f}-{100 * max(acc):.1f}% over shifts")
    if args.json:
        write_json(report, args.json)


if __name__ == "__main__":
    main()
