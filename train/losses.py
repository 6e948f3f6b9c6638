"""Center loss (Wen et al., 2016) with its own center update rule."""
from __future__ import annotations

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
