"""fp32 ONNX through the legacy TorchScript exporter (seconds, where dynamo takes minutes).

The exporter unrolls the ConvLSTM time loop into ~2000 nodes whose long generated names and
shape-computing side chains weigh as much as the weights; `compact` folds the side chains
(onnxruntime's basic, ONNX-standard optimisations) and gives intermediate tensors short names.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

OPSET = 17


def compact(path: Path) -> None:
    import onnx
    import onnxruntime as ort

    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=Path(path).parent)
    os.close(fd)
    try:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = tmp
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        m = onnx.load(tmp)
    finally:
        os.unlink(tmp)
    keep = {i.name for i in m.graph.input} | {o.name for o in m.graph.output}
    names = {}

    def short(x: str) -> str:
        if not x or x in keep:
            return x
        return names.setdefault(x, f"t{len(names):x}")

    for n in m.graph.node:
        n.name, n.doc_string = "", ""
        n.input[:] = [short(x) for x in n.input]
        n.output[:] = [short(x) for x in n.output]
    for init in m.graph.initializer:
        init.name = short(init.name)
    del m.graph.value_info[:]
    tidy(m)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def tidy(m) -> None:
    """Every node a name of its own and only the opsets its nodes use. Nameless nodes made
    onnxruntime 1.19-1.21 refuse the file ("two nodes with same node name", its fusions naming
    each fused node after the nodes fused), and the optimiser's saved model declares every opset
    it knows (ai.onnx.ml v5, which onnxruntime 1.17 cannot load)."""
    taken = {n.name for n in m.graph.node if n.name}
    seen = set()
    fresh = (f"n{i:x}" for i in range(1 << 30))
    for n in m.graph.node:
        if not n.name or n.name in seen:
            n.name = next(x for x in fresh if x not in taken)
        seen.add(n.name)
    used = {n.domain for n in m.graph.node} | {""}
    keep = [o for o in m.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" in used)]
    del m.opset_import[:]
    m.opset_import.extend(keep)


def export_onnx(module, sample: tuple, input_names: Sequence[str], output_names: Sequence[str], path: Path) -> Path:
    """Fixed shapes, batch 1: the time loop is unrolled anyway, so a dynamic axis would lie."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in shapes are expected
        torch.onnx.export(module, sample, str(path), input_names=list(input_names),
                          output_names=list(output_names), opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    compact(Path(path))
    return Path(path)
