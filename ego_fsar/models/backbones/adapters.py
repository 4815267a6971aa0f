"""TAMT's temporal-aware adapter (TAA), inserted beside the MLP of the last transformer blocks.

TAMT (Wang et al., CVPR 2025) freezes a pre-trained video ViT and adds, in each of the last L
blocks, `x + MLP(LN x) + TAA(LN x)`. TAA averages every temporal slot's tokens over space, runs a
temporal Conv1d(C -> C/4, k=3) + BN + ReLU, and turns the result into a per-slot, per-channel
scale `gamma = sigmoid(Conv1d 1x1)` and shift `beta = Conv1d 1x1` of the tokens:
`y * gamma + 0.1 * beta`. Submodule names (`L`, `L2`, `L3`) are TAMT's, so its checkpoints load.
"""
import torch
from torch import nn


class TemporalAwareAdapter(nn.Module):
    """`forward(y [B, N, C], num_slots) -> [B, N, C]`, where the N tokens are `num_slots` temporal
    slots of N / num_slots tokens each, slot-major (the patch embedding's order)."""

    def __init__(self, dim: int, reduction: int = 4, kernel_size: int = 3, beta_scale: float = 0.1):
        super().__init__()
        hidden = dim // reduction
        self.beta_scale = beta_scale
        self.L = nn.Sequential(
            nn.Conv1d(dim, hidden, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
        )
        self.L2 = nn.Sequential(nn.Conv1d(hidden, dim, 1, bias=False), nn.Sigmoid())
        self.L3 = nn.Sequential(nn.Conv1d(hidden, dim, 1, bias=False))

    def forward(self, y: torch.Tensor, num_slots: int) -> torch.Tensor:
        b, n, c = y.shape
        if n % num_slots:
            raise ValueError(f"TemporalAwareAdapter: {n} tokens do not split into {num_slots} temporal slots")
        slots = y.view(b, num_slots, n // num_slots, c)
        context = self.L(slots.mean(2).transpose(1, 2))  # [B, C/r, T']
        gamma = self.L2(context).transpose(1, 2).unsqueeze(2)  # [B, T', 1, C]
        beta = self.L3(context).transpose(1, 2).unsqueeze(2)
        return (slots * gamma + self.beta_scale * beta).view(b, n, c)
