"""A stacked bidirectional GRU written out step by step for TFLite and TFLite Micro.

Same function as the trained `nn.GRU` (batch first, batch 1, zero initial state), different
graph:
- the first layer's input-to-hidden products are two batched FULLY_CONNECTED ops per direction
  over the whole sequence; later layers read the steps one by one;
- nothing stacks the steps: TFLite Micro's CONCATENATION takes at most 10 inputs, the
  converter's lowering of `nn.GRU` concatenates all 30 steps (the head did not load), and it
  folds nested concatenations back into one. Layer 2 reads layer 1 step by step, and the
  head pools over time with ADD and MAXIMUM chains (`time_mean_max`);
- step 0 has no hidden-to-hidden product (the state is zero), so there is no constant zero
  state in the graph (a float constant in an int8 graph broke conversion, PROBES.md);
- fewer ops per cell step (the bundled head: 2,008 nodes instead of 2,285; int8 file 394 KB
  instead of 606 KB, with per-tensor FULLY_CONNECTED weights).
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


class StepwiseGRU(nn.Module):
    """`nn.GRU(batch_first=True)` in inference, zero initial state, batch 1: returns the output
    sequence as T tensors (1, directions * H)."""

    def __init__(self, gru: nn.GRU):
        super().__init__()
        if not gru.batch_first:
            raise ValueError("StepwiseGRU expects a batch_first GRU")
        dirs = 2 if gru.bidirectional else 1
        self.layers = nn.ModuleList(
            nn.ModuleList(_Direction(gru, l, d == 1) for d in range(dirs)) for l in range(gru.num_layers))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        for layer in self.layers:
            outs = [d(x) for d in layer]
            x = [torch.cat(s, dim=-1) if len(s) > 1 else s[0] for s in zip(*outs)]
        return x


def time_mean_max(steps: List[torch.Tensor]):
    """Mean and max over time of T tensors (1, F), as chains of two-input ops."""
    total, top = steps[0], steps[0]
    for s in steps[1:]:
        total = total + s
        top = torch.maximum(top, s)
    return total * (1.0 / len(steps)), top
