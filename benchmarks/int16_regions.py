"""What int16 activations in parts of the full-integer TFLite files buy, and cost.

    python benchmarks/int16_regions.py --model models/bundle-qat.pt \\
        --json benchmarks/results/int16_regions.json

Each variant is a TFLite-only `export_model` run of the checkpoint whose window and step recipes
get int16 activations (int8 weights, ai-edge-quantizer's 16x8 configs) for the listed operator
types, the rest as `edgeser export` writes it; each variant's own parity report (agreement, UA
change, size against fp32, single-thread latency) on the checkpoint's held-out speakers.
Minutes per variant.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {"none": [], "gates": ["LOGISTIC", "TANH", "MUL", "ADD"], "state": ["MUL", "ADD"],
            "conv": ["CONV_2D"], "classifier": ["classifier"]}


def classifier_tail(buf: bytes):
    """[(op type, output tensor name)] of the SOFTMAX and the FULLY_CONNECTED ops that feed it
    (logits, embedding): the last ops before the answer, where int8 logits tie close answers."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    from edgeser.export.tflite_export import builtin_op_names

    m = fb.read_model(bytes(buf))
    codes = builtin_op_names(m)
    out = []
    for sg in m.subgraphs:
        producer = {o: op for op in sg.operators for o in op.outputs}
        for op in sg.operators:
            if codes[op.opcodeIndex] != "SOFTMAX":
                continue
            out.append(("SOFTMAX", fb.get_tensor_name(sg.tensors[op.outputs[0]])))
            prev = producer.get(op.inputs[0])
            while prev is not None and codes[prev.opcodeIndex] == "FULLY_CONNECTED":
                out.append(("FULLY_CONNECTED", fb.get_tensor_name(sg.tensors[prev.outputs[0]])))
                prev = producer.get(prev.inputs[0])
    return out


def run_variant(ckpt: str, ops, out: Path) -> dict:
    from edgeser.export import exporter, quantize

    def recipe(q):
        import re

        from ai_edge_quantizer import qtyping

        quantize.fc_tensorwise(q)
        for op in ops:
            if op == "classifier":
                for kind, name in classifier_tail(bytes(q._float_model_buffer)):
                    q.add_static_config(f"^{re.escape(name)};$", getattr(qtyping.TFLOperationName, kind), 16, 8,
                                        qtyping.QuantGranularity.TENSORWISE)
            else:
                q.add_static_config(".*", getattr(qtyping.TFLOperationName, op), 16, 8)

    saved = dict(quantize.TFLITE_RECIPES)
    quantize.TFLITE_RECIPES.update({"window": recipe, "frontend_step": recipe,
                                    **({"head": recipe} if "classifier" in ops else {})})
    try:
        exporter.export_model(ckpt, out, formats=("tflite",), progress=False)
    finally:
        quantize.TFLITE_RECIPES.clear()
        quantize.TFLITE_RECIPES.update(saved)
    rows = json.loads((out / "parity.json").read_text())["rows"]
    return {r["artifact"]: {k: r.get(k) for k in ("agreement", "UA_delta", "size_ratio", "latency_ms")}
            for r in rows if "int8" in r["artifact"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint (its held-out speakers are the parity set)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    res = {"command": " ".join(sys.argv), "variants": {}}
    print(f"{'int16 for':<28} {'file':<46} {'agree':>6} {'dUA':>6} {'size':>6} {'ms':>6}")
    for name in a.variants:
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_variant(a.model, VARIANTS[name], Path(tmp) / "export")
        res["variants"][name] = {"int16_ops": VARIANTS[name], "rows": rows}
        for f, r in rows.items():
            print(f"{','.join(VARIANTS[name]) or 'none':<28} {f:<46} {r['agreement']:>6.1%} "
                  f"{100 * (r['UA_delta'] or 0):>+6.1f} {r['size_ratio'] or 0:>6.1%} {r['latency_ms']:>6.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
