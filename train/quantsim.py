"""Simulated int8 activations for quantization-aware training (`edgeser train --qat`).

The full-integer TFLite file stores every activation tensor of the front end as int8 with one
scale per tensor, and the ConvLSTM state is requantised every frame; trained in float, the
network relies on precision it loses there (docs/export.md). With QAT on, each of those tensors
is rounded to 256 levels in the forward pass (straight-through gradient), so training finds
weights that do not depend on it.

Ranges: per tensor, the QAT_RANGE_QUANTILE of the batch's per-row maxima (and minima), as export
calibrates (export/quantize.py RANGE_QUANTILE): training then meets the clipping the int8 file
will do. Sigmoid and tanh outputs have TFLite's fixed ranges (1/256 from 0 and 1/128 around 0).
Nothing here is saved: a QAT checkpoint is an ordinary float checkpoint; export calibrates it.
"""
from __future__ import annotations

import torch
import torch.nn as nn


QAT_RANGE_QUANTILE = 0.9   # export calibrates the window and step models' activations at this quantile too


def fake_int8(x: torch.Tensor, quantile: float = 1.0) -> torch.Tensor:
    """x rounded to int8 with an asymmetric per-tensor range spanning 0 and, over the rows of x
    (its first axis), the `quantile` of their maxima and minima (1.0: x's min and max)."""
    with torch.no_grad():
        if quantile < 1.0 and x.dim() > 1 and x.shape[0] > 1:
            rows = x.detach().reshape(x.shape[0], -1)
            lo = min(float(torch.quantile(rows.amin(1), 1.0 - quantile)), 0.0)
            hi = max(float(torch.quantile(rows.amax(1), quantile)), 0.0)
        else:
            lo = min(float(x.min()), 0.0)
            hi = max(float(x.max()), 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    zero_point = int(max(-128, min(127, round(-128 - lo / scale))))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)


def fake_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(torch.sigmoid(x), 1.0 / 256, -128, -128, 127)


def fake_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(torch.tanh(x), 1.0 / 128, 0, -128, 127)


class QuantSim(nn.Module):
    """Mixin state: `qat` off = the float network, bit for bit."""

    qat: bool = False

    def q(self, x: torch.Tensor) -> torch.Tensor:
        return fake_int8(x, QAT_RANGE_QUANTILE) if self.qat else x

    def sigmoid(self, x: torch.Tensor) -> torch.Tensor:
        return fake_sigmoid(x) if self.qat else torch.sigmoid(x)

    def tanh(self, x: torch.Tensor) -> torch.Tensor:
        return fake_tanh(x) if self.qat else torch.tanh(x)


def set_qat(model: nn.Module, on: bool = True) -> nn.Module:
    """Switch simulated int8 activations on or off in every part of `model` that has them."""
    for m in model.modules():
        if isinstance(m, QuantSim):
            m.qat = on
    return model
