"""The front end written channels-last (NHWC), for the TFLite files.

TFLite's CONV_2D, MAX_POOL_2D and their int8 kernels take NHWC tensors; PyTorch's Conv1d is NCL.
Traced as trained, every state-to-state convolution of the unrolled recurrence sat between a
RESHAPE and a TRANSPOSE on each side (the window file: 134 TRANSPOSEs and 190 RESHAPEs among
1,636 ops), each one an op, a tensor and a quantization record in the file and a copy at run
time. Here every activation is a (frames, 1, positions, channels) tensor, and each convolution
is `permute -> conv2d -> permute`, which the converter's own NCHW <-> NHWC transposes cancel,
leaving a bare CONV_2D. Gates split along the last axis; batch norm is a per-channel MUL and ADD.

The same weights, the same sums: `tests/test_export.py` compares it with `Frontend` in PyTorch.
The window model also runs each block's input-to-state convolution, batch norm, pooling and
residual once for all its frames instead of once per chunk (TFLite Micro's limit of 10 inputs
per CONCATENATION is met by stacking the frames' states in groups).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeser.train.model import ConvLSTMBlock, FilterbankStem, Frontend, derived_weight

TFLM_MAX_CONCAT = 10   # inputs of one CONCATENATION in TensorFlow Lite Micro


def conv_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int,
              padding: int) -> torch.Tensor:
    """Conv1d along the positions of an NHWC tensor (N, 1, L, C_in) -> (N, 1, L', C_out);
    weight in Conv1d layout (C_out, C_in, k)."""
    y = F.conv2d(x.permute(0, 3, 1, 2), weight.unsqueeze(2), bias, stride=(1, stride), padding=(0, padding))
    return y.permute(0, 2, 3, 1)


def max_pool_nhwc(x: torch.Tensor, pool: int) -> torch.Tensor:
    return F.max_pool2d(x.permute(0, 3, 1, 2), (1, pool)).permute(0, 2, 3, 1)


def batch_norm_nhwc(x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """Inference batch norm over the last (channel) axis."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return x * scale + (bn.bias - bn.running_mean * scale)


def cat_grouped(parts: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """torch.cat in CONCATENATIONs of at most TFLM_MAX_CONCAT inputs."""
    parts = list(parts)
    while len(parts) > TFLM_MAX_CONCAT:
        parts = [torch.cat(parts[i:i + TFLM_MAX_CONCAT], dim) if len(parts[i:i + TFLM_MAX_CONCAT]) > 1
                 else parts[i] for i in range(0, len(parts), TFLM_MAX_CONCAT)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


FINE_STEPS = 4   # int8 steps of the fine copy (two_range) across the amplitude of the log floor


def fine_range(stem: FilterbankStem) -> float:
    """Amplitude below which filter responses come from the fine copy (two_range): about
    FINE_STEPS of its int8 steps (t / 127.5) to the floor's amplitude, rounded to a power of two,
    so that the fine filters w / t are exact in float and quantize to the coarse filters' very
    int8 weights (the file then stores them once, export/tflite_export.py)."""
    return 2.0 ** round(math.log2(127.5 * stem.floor ** 0.5 / FINE_STEPS))


def two_range(coarse: torch.Tensor, fine_unit: torch.Tensor, t: float) -> torch.Tensor:
    """Filter responses at two int8 resolutions, joined in the float island before the energy.

    One int8 scale for every band's response spans the loudest band's peaks: a step of about 1%
    of them, while half of all responses lie within three steps of zero and the log floor's
    amplitude is a third of a step (int8 responses alone cost about 2 points of argmax agreement,
    docs/export.md). `fine_unit` is the same filters divided by t, clamped to +-1: the converter
    fuses the clamp into the convolution (RELU_N1_TO_1), so its int8 output has a step of
    t / 127.5. Below t a response is read from it; above, the coarse copy adds what the fine one
    clipped. In float the sum is the response itself, clamp(y) + (y - clamp(y)); the quantizer
    keeps the join in float (quantize.float_energy), the two convolutions int8."""
    return torch.clamp(fine_unit, -1.0, 1.0) * t + (coarse - torch.clamp(coarse, -t, t))


def stem_nhwc(stem: FilterbankStem, x: torch.Tensor, two_ranges: bool = False) -> torch.Tensor:
    """FilterbankStem on frames (N, samples) -> (N, 1, positions, bands); two_ranges: the filter
    responses as two_range joins them, for the graph that is quantized to int8."""
    k, s, p = stem.conv.kernel_size[0], stem.conv.stride[0], stem.conv.padding[0]
    row, taps = stem.row_geometry()
    n = x.shape[-1]
    total = ((n + 2 * p - k) // s * s) + taps * row
    x = F.pad(x, (p, total - n - p))
    # rows of `row` samples are the channels, as in FilterbankStem.filters: here a plain reshape
    x = x.reshape(x.shape[0], 1, total // row, row)
    w = derived_weight(stem, "blocked_weight")
    y = conv_nhwc(x, w, None, s // row, 0)   # (N, 1, L, 2 * bands)
    if two_ranges:
        t = fine_range(stem)
        y = two_range(y, conv_nhwc(x, w * (1.0 / t), None, s // row, 0), t)
    N, _, L, _ = y.shape
    e = y.reshape(N * L, stem.bands, 2).pow(2).sum(-1)                             # filter pairs' energy
    return batch_norm_nhwc(torch.log(e + stem.floor), stem.norm).reshape(N, 1, L, stem.bands)


def block_nhwc(blk: ConvLSTMBlock, x: torch.Tensor,
               state: Optional[Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """ConvLSTMBlock.forward on (T, 1, L_in, C_in) frames -> (T, 1, L_out, C_out), (h, c) as
    (1, 1, L, C)."""
    gx = conv_nhwc(x, blk.i2s.weight, blk.i2s.bias, blk.i2s.stride[0], blk.i2s.padding[0])
    h, c = (None, None) if state is None else state
    outs = []
    # one frame (a step model with a hop of one frame) is not split: the converter fails on a split into one
    for g in (gx.split(1, dim=0) if gx.shape[0] > 1 else [gx]):
        if h is not None:
            g = g + conv_nhwc(h, blk.s2s.weight, None, 1, blk.s2s.padding[0])
        i, f, u, o = g.chunk(4, dim=-1)
        iu = torch.sigmoid(i) * torch.tanh(u)
        c = iu if c is None else blk.clip(torch.sigmoid(f) * c + iu)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    y = F.relu(batch_norm_nhwc(cat_grouped(outs, 0), blk.bn))
    if isinstance(blk.pool, nn.MaxPool1d):
        k = blk.pool.kernel_size
        y = max_pool_nhwc(y, k[0] if isinstance(k, tuple) else k)
    if blk.residual:
        w = derived_weight(blk, "pooled_skip_weight")
        s = conv_nhwc(x, w, None, w.shape[-1], 0)
        n = min(s.shape[2], y.shape[2])
        y = y[:, :, :n] + s[:, :, :n]
    return y, (h, c)


class ChannelsLastFrontend(nn.Module):
    """`Frontend.forward` in NHWC: frames (1, T, samples) and states as Frontend takes them
    ((1, C, L) pairs, or None for zeros) -> features (1, T, D) and the new states, (1, C, L).
    Only the state inputs and outputs are transposed, once per call. int8: the form quantized
    to int8 (a filterbank stem's responses at two ranges, two_range); the same function."""

    def __init__(self, frontend: Frontend, int8: bool = False):
        super().__init__()
        self.frontend = frontend
        self.int8 = int8

    def forward(self, frames: torch.Tensor, state=None):
        fe = self.frontend
        B, T, n = frames.shape
        if B != 1:
            raise ValueError("the channels-last front end runs one stream (batch 1)")
        x = frames.reshape(T, n)
        x = stem_nhwc(fe.stem, x, self.int8) if fe.stem is not None else x.reshape(T, 1, n, 1)
        new_state: List[Tuple[torch.Tensor, torch.Tensor]] = []
        for i, blk in enumerate(fe.blocks):
            hc = None if state is None else tuple(t.transpose(1, 2).unsqueeze(1) for t in state[i])
            x, (h, c) = block_nhwc(blk, x, hc)
            new_state.append((h.squeeze(1).transpose(1, 2), c.squeeze(1).transpose(1, 2)))
        # the max over positions as MAX_POOL_2D: the quantizer leaves REDUCE_MAX in float
        feats = torch.cat([x.mean(2), max_pool_nhwc(x, x.shape[2]).squeeze(2)], dim=-1)   # (T, 1, 2C)
        return feats.reshape(1, T, -1), new_state
