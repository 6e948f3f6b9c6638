"""The full-integer TFLite files' three precision measures, switched off one at a time.

    python benchmarks/int8_precision.py --model models/bundle-qat.pt \\
        --json benchmarks/results/int8_precision.json

Measures (export/channels_last.py, export/quantize.py):
  two-range   the filter bank's responses as two int8 tensors, coarse and fine (two_range)
  gate bounds gate pre-activations bounded where int8 sigmoid and tanh saturate (saturation_bounds)
  per window  the step model's range quantile taken over windows, not over hops (_calibrate)
Each variant is quantized from the checkpoint as `edgeser export` does (its calibration clips)
and scored by argmax agreement with the PyTorch model on two sets of windows: the checkpoint's
held-out speakers (the parity report's set) and a larger set of other clips that are not
calibration clips (training speakers: agreement with the float model needs no unseen speaker,
and 3-4 times the windows make a point of difference readable). Window rows: the whole-window
file; step rows: the int8 step model streamed hop by hop with the PyTorch head after it.
--margins also counts the flipped windows by how surely the float model decided them.
Minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WINDOW_VARIANTS = {  # name: (two-range, gate bounds)
    "none": (False, False), "two-range": (True, False), "gate bounds": (False, True), "both (export)": (True, True)}
STEP_VARIANTS = {  # name: (per window, the others on)
    "two-range + gate bounds, quantile over hops": False, "all three (export)": True}


MARGIN_EDGES = (0.0, 0.02, 0.05, 0.1, 0.2, 1.0)


def by_margin(ref: np.ndarray, flipped: np.ndarray) -> list:
    """Windows and flipped windows per bin of the reference's top-2 probability margin: a window
    the float model itself barely decides flips under any rounding."""
    top2 = np.sort(ref, 1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    bins = np.digitize(margin, MARGIN_EDGES[1:-1])
    return [{"from": lo, "to": hi, "windows": int((bins == i).sum()), "flipped": int(flipped[bins == i].sum())}
            for i, (lo, hi) in enumerate(zip(MARGIN_EDGES[:-1], MARGIN_EDGES[1:]))]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint (its held-out speakers are the parity set)")
    ap.add_argument("--data", nargs="+", default=[str(ROOT.parent / "shared" / "data" / c) for c in ("ravdess", "emodb")],
                    help="corpora for the larger set (clips not used for calibration)")
    ap.add_argument("--clips", type=int, default=900, help="clips in the larger set (an even spread)")
    ap.add_argument("--export-only", action="store_true",
                    help="only the export's own setting (all measures on): to compare checkpoints, e.g. QAT runs")
    ap.add_argument("--margins", action="store_true",
                    help="also count each row's flipped windows by the PyTorch model's top-2 probability margin")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import tempfile

    import torch

    from edgeser.export import calibration_data, clips as C
    from edgeser.export.exporter import int8_tflite
    from edgeser.export.streaming import TorchRunner, stream_probs
    from edgeser.export.tflite_export import write_tflite
    from edgeser.export.wrappers import state_shapes
    from edgeser.runtime.backends import open_model
    from edgeser.train.checkpoint import load_model
    from edgeser.train.data import eval_windows, read_corpus

    torch.set_num_threads(1)
    model, ckpt = load_model(a.model)
    cfg = model.cfg
    shapes = state_shapes(model)
    hop_frames = 5                      # edgeser export's default hop (--hop-s 0.5)
    hop = hop_frames * cfg.frame_samples
    cal_paths, _ = C.calibration_paths(ckpt)
    cal_windows = C.windows(C.load_audio(cal_paths), cfg.window_samples)
    held = C.heldout(ckpt, cfg.labels, limit=400)
    held_speakers = C.heldout_speakers(ckpt)
    others = [c.path for d in a.data for c in read_corpus(d)
              if c.path not in set(cal_paths) and c.speaker not in held_speakers]
    others = [others[i] for i in sorted(set(np.linspace(0, len(others) - 1, a.clips).round().astype(int)))]
    sets = {}
    for name, audio in (("held-out", held.audio), ("larger", C.load_audio(others))):
        W = np.concatenate([eval_windows(x, cfg.window_samples) for x in audio]).astype(np.float32)
        with torch.no_grad():
            ref = TorchRunner(model, "window", 1).module(torch.from_numpy(W)).numpy()
        sets[name] = (W, ref)
    head = TorchRunner(model, "head", hop_frames)
    res = {"command": " ".join(["python benchmarks/int8_precision.py", *sys.argv[1:]]),
           "windows": {k: int(len(v[0])) for k, v in sets.items()}, "rows": []}
    print(f"windows: held-out {res['windows']['held-out']}, larger {res['windows']['larger']}")
    print(f"{'file':<7} {'variant':<44} {'held-out':>9} {'larger':>9} {'size KB':>8}")

    def score(role, variant, buf, ins, outs):
        with tempfile.TemporaryDirectory() as tmp:
            p = write_tflite(buf, ins, outs, Path(tmp) / "m.tflite")
            b = open_model(p, threads=1)
            row = {"file": role, "variant": variant, "size_kb": p.stat().st_size / 1024}
            for name, (W, ref) in sets.items():
                if role == "window":
                    P = np.concatenate([b.run({"audio": w[None]})["probs"] for w in W])
                else:
                    P = np.concatenate([stream_probs(b.run, head.run, w, hop, shapes) for w in W])
                flipped = P.argmax(1) != ref.argmax(1)
                row[name] = float(1 - flipped.mean())
                if a.margins:
                    row[f"{name} by margin"] = by_margin(ref, flipped)
        res["rows"].append(row)
        print(f"{role:<7} {variant:<44} {row['held-out']:9.1%} {row['larger']:9.1%} {row['size_kb']:8.0f}", flush=True)
        for name in sets if a.margins else ():
            print("        " + name + ": " + ", ".join(
                f"{m['from']:.2f}-{m['to']:.2f} {m['flipped']}/{m['windows']}" for m in row[f"{name} by margin"]))

    data = calibration_data.for_role(model, "window", cal_windows, hop_frames, shapes)
    for variant, (two, gates) in WINDOW_VARIANTS.items():
        if a.export_only and not (two and gates):
            continue
        score("window", variant, *int8_tflite(model, "window", hop_frames, data, two_range=two, gate_bounds=gates))
    data = calibration_data.for_role(model, "frontend_step", cal_windows, hop_frames, shapes)
    for variant, per_window in STEP_VARIANTS.items():
        if a.export_only and not per_window:
            continue
        score("step", variant, *int8_tflite(model, "frontend_step", hop_frames, data, per_window=per_window))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
