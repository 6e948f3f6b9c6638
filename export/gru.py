"""A stacked bidirectional GRU written out step by step for TFLite and TFLite Micro.

Same function as the trained `nn.GRU` (batch first, batch 1, zero initial state), different
graph:
- the first layer of a bidirectional GRU runs both directions as one recurrence
  (`_BothDirections`): step s is the forward cell at time s and the backward cell at time T-1-s,
  so every op of a step serves both. Its input-to-hidden products are batched FULLY_CONNECTED
  ops over the whole sequence (the backward ones over the reversed rows); later layers read the
  steps one by one, one recurrence per direction;
- nothing stacks the steps: TFLite Micro's CONCATENATION takes at most 10 inputs, the
  converter's lowering of `nn.GRU` concatenates all 30 steps (the head did not load), and it
  folds nested concatenations back into one. Layer 2 reads layer 1 step by step, and the
  head pools over time with ADD and MAXIMUM chains (`time_mean_max`);
- step 0 has no hidden-to-hidden product (the state is zero), so there is no constant zero
  state in the graph (a float constant in an int8 graph broke conversion, PROBES.md);
- few ops per cell step: the bundled head (1 x 48 BiGRU over 20 frames) has 271 int8 ops (745
  with one recurrence per direction) and a 116 KB int8 file (171 KB), with the slice fusion,
  same-scale ranges and shared quantization records of export/slices.py, export/quantize.py and
  export/tflite_export.py.
"""
from __future__ import annotations

from typing import List, Union

import torch
import torch.nn as nn


class _Direction(nn.Module):
    def __init__(self, gru: nn.GRU, layer: int, reverse: bool):
        super().__init__()
        sfx = f"_l{layer}{'_reverse' if reverse else ''}"
        w_ih, w_hh = getattr(gru, "weight_ih" + sfx).detach(), getattr(gru, "weight_hh" + sfx).detach()
        b_ih, b_hh = getattr(gru, "bias_ih" + sfx).detach(), getattr(gru, "bias_hh" + sfx).detach()
        H = gru.hidden_size
        self.H, self.reverse = H, reverse
        # r and z see b_ih + b_hh alike, so both biases go into the batched input product
        self.x_rz = nn.Linear(w_ih.shape[1], 2 * H)
        self.x_n = nn.Linear(w_ih.shape[1], H)
        self.h_rz = nn.Linear(H, 2 * H, bias=False)
        self.h_n = nn.Linear(H, H)  # b_hn stays inside r * (W_hn h + b_hn)
        with torch.no_grad():
            self.x_rz.weight.copy_(w_ih[:2 * H])
            self.x_rz.bias.copy_(b_ih[:2 * H] + b_hh[:2 * H])
            self.x_n.weight.copy_(w_ih[2 * H:])
            self.x_n.bias.copy_(b_ih[2 * H:])
            self.h_rz.weight.copy_(w_hh[:2 * H])
            self.h_n.weight.copy_(w_hh[2 * H:])
            self.h_n.bias.copy_(b_hh[2 * H:])

    def forward(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> List[torch.Tensor]:
        """x (1, T, D), or T tensors (1, D) -> the hidden state at every step, in time order, each (1, H)."""
        if isinstance(x, torch.Tensor):
            gx_rz, gx_n = self.x_rz(x).unbind(1), self.x_n(x).unbind(1)
        else:
            gx_rz, gx_n = [self.x_rz(v) for v in x], [self.x_n(v) for v in x]
        order = range(len(gx_rz) - 1, -1, -1) if self.reverse else range(len(gx_rz))
        out: List[torch.Tensor] = [None] * len(gx_rz)
        h = None
        for t in order:
            if h is None:
                r, z = torch.sigmoid(gx_rz[t]).chunk(2, dim=-1)
                n = torch.tanh(gx_n[t] + r * self.h_n.bias)
                h = n - z * n
            else:
                r, z = torch.sigmoid(gx_rz[t] + self.h_rz(h)).chunk(2, dim=-1)
                n = torch.tanh(gx_n[t] + r * self.h_n(h))
                h = n + z * (h - n)
            out[t] = h
        return out


class _BothDirections(nn.Module):
    """Both directions of a bidirectional layer as one recurrence: step s runs the forward cell at
    time s and the backward cell at time T-1-s on one state [h_f, h_b] (1, 2H).

    Every op of a cell step then serves both directions: 14 ops per step for the pair instead of
    16 for each direction. The gates are laid out [r_f, r_b, z_f, z_b] and [n_f, n_b]. The input
    products stay one per gate and direction, batched over the sequence (the backward ones over
    the time-reversed input), so a step reads one row of each; the hidden-to-hidden products are
    block-diagonal (their zero blocks hold 3 x 2 x H x H values). The steps come out in that
    paired order (`time_order` undoes it); mean and max over time need no reordering.
    """

    def __init__(self, gru: nn.GRU, layer: int):
        super().__init__()
        f, b = _Direction(gru, layer, False), _Direction(gru, layer, True)
        H = self.H = gru.hidden_size
        D = f.x_rz.weight.shape[1]
        # r_f, r_b, z_f, z_b, n_f, n_b
        parts = [(f.x_rz, 0), (b.x_rz, 0), (f.x_rz, 1), (b.x_rz, 1), (f.x_n, 0), (b.x_n, 0)]
        self.x = nn.ModuleList(nn.Linear(D, H) for _ in parts)
        self.h_rz = nn.Linear(2 * H, 4 * H, bias=False)
        self.h_n = nn.Linear(2 * H, 2 * H)
        with torch.no_grad():
            for lin, (src, gate) in zip(self.x, parts):
                lin.weight.copy_(src.weight[gate * H:(gate + 1) * H])
                lin.bias.copy_(src.bias[gate * H:(gate + 1) * H])
            self.h_rz.weight.zero_()
            self.h_n.weight.zero_()
            for k, d in enumerate((f, b)):
                mine = slice(k * H, (k + 1) * H)
                for gate in (0, 1):          # rows of r_k, then of z_k
                    rows = slice((2 * gate + k) * H, (2 * gate + k + 1) * H)
                    self.h_rz.weight[rows, mine].copy_(d.h_rz.weight[gate * H:(gate + 1) * H])
                self.h_n.weight[mine, mine].copy_(d.h_n.weight)
                self.h_n.bias[mine].copy_(d.h_n.bias)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """x (1, T, D) -> T tensors (1, 2H): step s holds [h_f(s), h_b(T-1-s)]."""
        x = x.reshape(x.shape[1], x.shape[2])   # rows are steps: a row slice needs no reshape
        # rows reversed by constant indices (one GATHER_ND): torch.flip's REVERSE_V2 has no int8
        # kernel in the quantizer and ran in float
        ins = (x, x[list(range(x.shape[0] - 1, -1, -1))])
        g_rz = torch.cat([lin(ins[k % 2]) for k, lin in enumerate(self.x[:4])], dim=-1)   # (T, 4H)
        g_n = torch.cat([lin(ins[k]) for k, lin in enumerate(self.x[4:])], dim=-1)        # (T, 2H)
        out: List[torch.Tensor] = []
        h = None
        for s in range(x.shape[0]):
            if h is None:
                r, z = torch.sigmoid(g_rz[s:s + 1]).chunk(2, dim=-1)
                n = torch.tanh(g_n[s:s + 1] + r * self.h_n.bias)
                h = n - z * n
            else:
                r, z = torch.sigmoid(g_rz[s:s + 1] + self.h_rz(h)).chunk(2, dim=-1)
                n = torch.tanh(g_n[s:s + 1] + r * self.h_n(h))
                h = n + z * (h - n)
            out.append(h)
        return out

    def time_order(self, steps: List[torch.Tensor]) -> List[torch.Tensor]:
        """Paired steps -> the layer's output at each time t, [h_f(t), h_b(t)]."""
        H, T = self.H, len(steps)
        return [torch.cat([steps[t][:, :H], steps[T - 1 - t][:, H:]], dim=-1) for t in range(T)]


class StepwiseGRU(nn.Module):
    """`nn.GRU(batch_first=True)` in inference, zero initial state, batch 1: returns the output
    sequence as T tensors (1, directions * H)."""

    def __init__(self, gru: nn.GRU):
        super().__init__()
        if not gru.batch_first:
            raise ValueError("StepwiseGRU expects a batch_first GRU")
        dirs = 2 if gru.bidirectional else 1
        # the first layer of a bidirectional GRU reads a tensor: both directions run as one
        # recurrence (_BothDirections); later layers read step lists, one recurrence per direction
        self.layers = nn.ModuleList(
            _BothDirections(gru, 0) if l == 0 and dirs == 2 else
            nn.ModuleList(_Direction(gru, l, d == 1) for d in range(dirs)) for l in range(gru.num_layers))

    def _run(self, x: torch.Tensor, pooled: bool) -> List[torch.Tensor]:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if isinstance(layer, _BothDirections):
                x = layer(x)
                if not (pooled and i == last):
                    x = layer.time_order(x)
            else:
                outs = [d(x) for d in layer]
                x = [torch.cat(s, dim=-1) if len(s) > 1 else s[0] for s in zip(*outs)]
        return x

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self._run(x, pooled=False)

    def mean_max(self, x: torch.Tensor):
        """Mean and max over time of the last layer's output (1, directions * H) each: the
        head's pooling, without putting the paired steps back in time order."""
        return time_mean_max(self._run(x, pooled=True))


def time_mean_max(steps: List[torch.Tensor]):
    """Mean and max over time of T tensors (1, F), as chains of two-input ops."""
    total, top = steps[0], steps[0]
    for s in steps[1:]:
        total = total + s
        top = torch.maximum(top, s)
    return total * (1.0 / len(steps)), top
