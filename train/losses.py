"""The loss terms beside cross-entropy: center loss (Wen et al., 2016) with its own center update
rule, and a speaker adversary behind a gradient reversal."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class CenterLoss(nn.Module):
    """0.5 * mean ||e_i - c_{y_i}||^2. Centers get no autograd gradient: `update` moves them
    towards their class members with rate alpha, as in the paper, so the embedding and the
    centers learn at separately chosen rates."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.register_buffer("centers", torch.zeros(n_classes, dim))

    def forward(self, emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (emb - self.centers[y]).pow(2).sum(1).mean()

    @torch.no_grad()
    def update(self, emb: torch.Tensor, y: torch.Tensor, alpha: float, all_reduce=None) -> None:
        """c_j -= alpha * sum_i(c_j - e_i) / (1 + n_j) over the batch members of class j."""
        diff = torch.zeros_like(self.centers)
        diff.index_add_(0, y, self.centers[y] - emb.detach())
        count = torch.zeros(self.centers.shape[0], device=emb.device)
        count.index_add_(0, y, torch.ones_like(y, dtype=count.dtype))
        if all_reduce is not None:  # DDP: every rank applies the same update
            all_reduce(diff)
            all_reduce(count)
        self.centers -= alpha * diff / (1 + count).unsqueeze(1)


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


class SpeakerAdversary(nn.Module):
    """Guesses the training speaker from the embedding through a gradient reversal (Ganin &
    Lempitsky, 2015): it learns to tell speakers apart while the network beneath it learns to hide
    them, so the embedding keeps what is said about emotion and loses who says it."""

    def __init__(self, dim: int, n_speakers: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, n_speakers))

    def forward(self, emb: torch.Tensor, scale: float) -> torch.Tensor:
        """Speaker logits; the gradient reaching `emb` is -scale times the adversary's."""
        return self.net(_ReverseGrad.apply(emb, scale))

    @staticmethod
    def ramp(progress: float) -> float:
        """0 -> 1 over training (DANN's schedule): an untrained adversary's noise does not steer
        the features in the first epochs."""
        return float(2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)
