"""fp32 ONNX through the legacy TorchScript exporter (seconds, where dynamo takes minutes)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch

OPSET = 17


def export_onnx(module: torch.nn.Module, sample: tuple, input_names: Sequence[str],
                output_names: Sequence[str], path: Path) -> Path:
    """Fixed shapes, batch 1: the time loop is unrolled anyway, so a dynamic axis would lie."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in shapes are expected
        torch.onnx.export(module, sample, str(path), input_names=list(input_names),
                          output_names=list(output_names), opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    return Path(path)
