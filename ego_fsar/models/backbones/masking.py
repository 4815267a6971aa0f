"""Seeded tube masks for masked video transformers (VideoMAE / MM-CDFSL).

A tube mask hides the same spatial positions in every temporal slot: per clip, `int(ratio * S)`
of the S = H' * W' positions are drawn without replacement, as MM-CDFSL's `TubeMaskingGenerator`
does. Masks are `[B, T' * H' * W']` booleans in the patch embedding's token order (slot-major),
True where a token is hidden, so `tokens[~mask]` keeps the visible ones.
"""
from typing import Sequence

import torch
from fvcore.common.config import CfgNode
from torch import Tensor


class TubeMaskGenerator:
    """Draws tube masks from its own generator: the i-th call returns the same masks in every run."""

    def __init__(self, ratio: float, seed: int = 0):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"MASK.RATIO must be in [0, 1), got {ratio}")
        self.ratio = ratio
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_cfg(cls, cfg: CfgNode) -> "TubeMaskGenerator":
        """Ratio `MASK.RATIO`, seed `RNG_SEED`."""
        return cls(cfg.MASK.RATIO, cfg.RNG_SEED)

    def __call__(self, batch_size: int, grid: Sequence[int]) -> Tensor:
        """Masks `[batch_size, T' * H' * W']` for a token grid `(T', H', W')`."""
        slots, height, width = grid
        positions = height * width
        num_masked = int(self.ratio * positions)
        ranks = torch.rand(batch_size, positions, generator=self.generator).argsort(1).argsort(1)
        per_slot = ranks < num_masked
        return per_slot.unsqueeze(1).expand(batch_size, slots, positions).reshape(batch_size, -1)


def clip_tube_masks(ratio: float, seed: int, clips: Sequence[int], view: int, grid: Sequence[int]) -> Tensor:
    """Masks `[len(clips), T' * H' * W']`, the one of clip c and view `view` drawn from a generator
    seeded by (seed, c, view) alone: the same whichever batch, process or order the clip comes in."""
    return torch.cat([TubeMaskGenerator(ratio, seed=(seed * 1_000_003 + int(c)) * 101 + view)(1, grid)
                      for c in clips])


def visible_tokens(tokens: Tensor, mask: Tensor, num_slots: int) -> Tensor:
    """Tokens `[B, N, D]` where `mask` `[B, N]` is False -> `[B, N_vis, D]`.

    Every clip must keep the same number of tokens in each of its `num_slots` temporal slots (true
    of tube masks), so the result still splits into slots of equal size.
    """
    b, n, d = tokens.shape
    if mask.shape != (b, n) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor of shape {(b, n)}, got {mask.dtype} {tuple(mask.shape)}")
    visible = ~mask.to(tokens.device)
    per_slot = visible.view(b, num_slots, -1).sum(2)
    if (per_slot != per_slot[0, 0]).any():
        raise ValueError("mask must keep the same number of tokens in every temporal slot of every clip")
    return tokens[visible].view(b, -1, d)
