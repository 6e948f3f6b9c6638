"""How much 8-bit audio moves a model's answers, by filterbank log floor, in PyTorch.

    python benchmarks/input_rounding.py --model runs/bundle/best.pt --floors 1e-6,1e-5,1e-4,1e-3

Rounds the held-out windows to a uniform step (default 0.006, the int8 audio input's scale in
the exported step models) and reports argmax agreement with the unrounded windows, for the
checkpoint's own floor and for the floors given (the same weights with another floor: a probe
of sensitivity, not of accuracy).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--data", default=ROOT.parent / "shared" / "data", type=Path)
    ap.add_argument("--held", nargs="+", default=["ravdess:01,07,10,16", "emodb:15"])
    ap.add_argument("--floors", default="", help="comma-separated floors to try besides the checkpoint's")
    ap.add_argument("--step", type=float, default=0.006)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    import torch

    from edgeser.export import clips as C
    from edgeser.train.checkpoint import load_model

    torch.set_num_threads(1)
    model, _ = load_model(a.model)
    paths = []
    for spec in a.held:
        corpus, spk = spec.split(":")
        paths += [str(a.data / corpus / r["path"]) for r in csv.DictReader(open(a.data / corpus / "manifest.csv"))
                  if r["speaker"] in set(spk.split(","))]
    X = torch.from_numpy(C.windows(C.load_audio(paths), model.cfg.window_samples))
    Xq = torch.round(X / a.step) * a.step
    stem = model.frontend.stem
    if stem is None:
        raise SystemExit(f"{a.model}: no filterbank stem (preset {model.cfg.stem})")
    floors = [stem.floor] + [float(f) for f in a.floors.split(",") if f]
    rows = []
    with torch.no_grad():
        for f in floors:
            stem.floor = f
            p0 = model(X)[0].argmax(1)
            p1 = model(Xq)[0].argmax(1)
            rows.append({"floor": f, "agreement": float((p0 == p1).float().mean())})
            print(f"floor {f:g}: argmax agreement under {a.step:g}-step rounding {rows[-1]['agreement']:.1%}"
                  f"{'  (trained with this floor)' if f == floors[0] else ''}", flush=True)
    rep = {"model": str(a.model), "windows": int(len(X)), "step": a.step, "rows": rows}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rep, indent=1))
    return rep


if __name__ == "__main__":
    main()
