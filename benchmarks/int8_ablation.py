"""Where full-integer int8 loses agreement: the step model of an export folder quantized several
ways, each scored against its fp32 TFLite pair on held-out speakers.

    python benchmarks/int8_ablation.py --model runs/bundle/export \\
        --held ravdess:01,07,10,16 emodb:15 --calibration ravdess:02 emodb:03 \\
        --json benchmarks/results/int8_ablation.json

Rows (agreement = argmax agreement per window with the fp32 step + fp32 head; the head stays fp32
so that only the step's quantization is measured):
  export recipe         what `edgeser export` writes (energy before LOG in float)
  energy int8           the same with the filterbank energy quantized too (the quantizer's default)
  only audio input      everything float but the int8 audio input
  only I/O              everything float but the int8 inputs and outputs (audio, states, features)
  int16 activations     static_wi8_ai16 (+ the float energy island): int8 weights, int16
                        activations and I/O (not full int8)
With --quantiles Q..., one row per calibration range quantile (export recipe) instead; with
--float-ops OP..., one row per operator type left in float (export recipe otherwise): which ops'
int8 rounding costs the answers (a diagnosis: such files are not full-integer).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def clips(data_root: Path, specs):
    """corpus:spk,spk ... -> clip paths from each corpus's manifest.csv."""
    out = []
    for spec in specs:
        corpus, spk = spec.split(":")
        rows = csv.DictReader(open(data_root / corpus / "manifest.csv"))
        out += [str(data_root / corpus / r["path"]) for r in rows if r["speaker"] in set(spk.split(","))]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="export folder with frontend_step.tflite and head.tflite")
    ap.add_argument("--data", default=ROOT.parent / "shared" / "data", type=Path)
    ap.add_argument("--held", nargs="+", default=["ravdess:01,07,10,16", "emodb:15"])
    ap.add_argument("--calibration", nargs="+", default=["ravdess:02", "emodb:03"])
    ap.add_argument("--calibration-every", type=int, default=3, help="use every Nth calibration clip")
    ap.add_argument("--quantiles", nargs="+", type=float, default=None,
                    help="instead of the rows above: the export recipe calibrated at each of these range quantiles")
    ap.add_argument("--float-ops", nargs="+", default=None, metavar="OP",
                    help="instead of the rows above: the export recipe with each of these operator types "
                         "(LOGISTIC, TANH, MUL, ADD, CONV_2D, ...) left in float")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    from ai_edge_quantizer import recipe as R

    from edgeser import manifest as M
    from edgeser.export import clips as C
    from edgeser.export import quantize
    from edgeser.export.streaming import stream_features
    from edgeser.export.tflite_export import write_tflite
    from edgeser.runtime.backends import open_model

    man = M.read(a.model)
    hop = man.hop_frames * man.frame_samples
    W = man.window_frames * man.frame_samples
    held = C.windows(C.load_audio(clips(a.data, a.held)), W)
    cal = C.windows(C.load_audio(clips(a.data, a.calibration)[::a.calibration_every]), W)
    step_art, head_art = man.artifact("frontend_step", "tflite", "fp32"), man.artifact("head", "tflite", "fp32")
    step32 = open_model(a.model / step_art.file, threads=1).run
    head32 = open_model(a.model / head_art.file, threads=1).run
    P32 = np.concatenate([head32({"features": stream_features(step32, w, hop, man.state_shapes)})["probs"]
                          for w in held])
    rec = []
    for w in cal:
        stream_features(step32, w, hop, man.state_shapes, record=rec)
    ins = [t["name"] for t in step_art.inputs]
    outs = [t["name"] for t in step_art.outputs]
    fp32 = (a.model / step_art.file).read_bytes()
    base = R.static_wi8_ai8()[0]
    noq = {"algorithm_key": "no_quantize"}

    def only(ops=("*",), rx=".*"):
        return lambda q: q.load_quantization_recipe([dict(regex=".*", operation="*", **noq)] +
                                                    [dict(base, regex=rx, operation=o) for o in ops])

    def energy_int8(q):   # drop the float island quantize_tflite adds: back to the plain recipe
        q.load_quantization_recipe(R.static_wi8_ai8())

    def a16(q):   # keeps the export's float energy island
        q.load_quantization_recipe(R.static_wi8_ai16() + [x for x in q.get_quantization_recipe()
                                                          if x.get("algorithm_key") == "no_quantize"])

    q0 = quantize.RANGE_QUANTILE["frontend_step"]
    variants = [("export recipe", None, q0), ("energy int8", energy_int8, q0), ("only audio input", None, q0),
                ("only I/O", only(["INPUT", "OUTPUT"]), q0), ("int16 activations", a16, q0)]
    if a.quantiles:
        variants = [(f"export recipe, quantile {q:g}", None, q) for q in a.quantiles]
    if a.float_ops:
        variants = [("export recipe", None, q0)] + [(f"{op} in float", _float_op(op), q0) for op in a.float_ops]
    rows = []
    tmp = Path("/tmp") / f"int8_ablation_{int(time.time())}"
    tmp.mkdir(exist_ok=True)
    for name, extra, quantile in variants:
        if name == "only audio input":
            extra = only(rx=_consumers_of(fp32, "audio"))
        buf = quantize.quantize_tflite(fp32, rec, extra, quantile, (ins, outs))
        path = write_tflite(buf, ins, outs, tmp / f"{len(rows)}.tflite")
        b = open_model(path, threads=1)
        P = np.concatenate([head32({"features": stream_features(b.run, w, hop, man.state_shapes)})["probs"]
                            for w in held])
        feeds = rec[len(rec) // 2]
        for _ in range(10):
            b.run(feeds)
        t = time.perf_counter()
        for _ in range(50):
            b.run(feeds)
        ms = (time.perf_counter() - t) / 50 * 1000
        rows.append({"variant": name, "agreement": float((P.argmax(1) == P32.argmax(1)).mean()),
                     "max_abs_dprob": float(np.abs(P - P32).max()), "size_bytes": path.stat().st_size,
                     "ms_per_step": ms})
        r = rows[-1]
        print(f"{name:20s} agreement {r['agreement']:.1%}  max|dp| {r['max_abs_dprob']:.3f}  "
              f"{r['size_bytes'] / 1024:.0f} KB  {ms:.2f} ms/step", flush=True)
    rep = {"model": str(a.model), "held": a.held, "calibration": a.calibration, "windows": int(len(held)),
           "calibration_windows": int(len(cal)), "rows": rows}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rep, indent=1))
    return rep


def _float_op(op: str):
    """Recipe addition: every operator of this type left unquantized."""
    def apply(q):
        from ai_edge_quantizer import algorithm_manager, qtyping

        q.update_quantization_recipe(".*", getattr(qtyping.TFLOperationName, op),
                                     algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    return apply


def _consumers_of(fp32: bytes, input_name: str) -> str:
    """A scope regex for the ops that read the named input (quantizing them quantizes it)."""
    import re

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=fp32)
    idx = next(d["index"] for d in it.get_input_details() if d["name"] == input_name)
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    outs = [names[o] for op in it._get_ops_details() if idx in list(op["inputs"]) for o in op["outputs"]]
    return "|".join(f"^{re.escape(n)};" for n in outs)


if __name__ == "__main__":
    main()
