"""Position tables of the ViT backbones, fitted to another token grid or number of frames.

Used when a model runs at a grid other than the one it was built for (VideoViT, CLIPViT, SpaceTimeViT
interpolate their tables on the fly) and when a checkpoint's tables are loaded into a model of another
size (`checkpoint_formats.convert_state_dict`, with the model's grids from `position_grids`).
"""
import logging
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

Grid = Tuple[int, int, int]


def _is_square(n: int) -> bool:
    return n >= 0 and math.isqrt(n) ** 2 == n


def resize_grid_table(table: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]) -> torch.Tensor:
    """Position table `[T*H*W, D]` over token grid `old_grid` (T, H, W), slot-major, -> the table
    of `new_grid`: bicubic over space (per temporal slot), linear over time."""
    (t0, h0, w0), (t1, h1, w1) = old_grid, new_grid
    if table.shape[0] != t0 * h0 * w0:
        raise ValueError(f"position table of {table.shape[0]} rows does not cover a {tuple(old_grid)} grid")
    if (t0, h0, w0) == (t1, h1, w1):
        return table
    dim = table.shape[-1]
    x = table.float().reshape(t0, h0, w0, dim).permute(0, 3, 1, 2)  # [T, D, H, W]
    if (h0, w0) != (h1, w1):
        x = F.interpolate(x, size=(h1, w1), mode="bicubic", align_corners=False)
    if t0 != t1:
        x = x.flatten(2).permute(2, 1, 0)  # [H*W, D, T]
        x = F.interpolate(x, size=t1, mode="linear", align_corners=False)
        x = x.permute(2, 1, 0).reshape(t1, dim, h1, w1)
    return x.permute(0, 2, 3, 1).reshape(t1 * h1 * w1, dim).to(table.dtype)


def _video_source_grid(rows: int, target: Grid) -> Optional[Grid]:
    """Grid of a checkpoint table of `rows` tokens: the target's temporal length with a square
    spatial grid, else the target's spatial grid with another temporal length."""
    t, h, w = target
    if rows % t == 0 and _is_square(rows // t):
        side = math.isqrt(rows // t)
        return t, side, side
    if rows % (h * w) == 0:
        return rows // (h * w), h, w
    return None


def resize_pos_embed(value: torch.Tensor, shape: Sequence[int], grid: Optional[Grid] = None) -> torch.Tensor:
    """Interpolate a position table to `shape`, or return it unchanged when that is impossible.

    `[1 + S, D]` (CLIP: class row, square grid) keeps the class row and resizes the grid (to
    `grid` if given, else the square of `shape`); so does `[1, 1 + S, D]` (SpaceTimeViT, `grid`
    (1, H', W')). `[1, N, D]` (video, no class token) needs the model's token `grid` (T', H', W');
    see `_video_source_grid` for the checkpoint's.
    """
    if value.dim() == 2 and len(shape) == 2 and _is_square(value.shape[0] - 1):
        if grid is None and _is_square(shape[0] - 1):
            grid = (1, math.isqrt(shape[0] - 1), math.isqrt(shape[0] - 1))
        if grid is not None:
            side = math.isqrt(value.shape[0] - 1)
            return torch.cat([value[:1], resize_grid_table(value[1:], (1, side, side), grid)])
    if (value.dim() == 3 and len(shape) == 3 and grid is not None and grid[0] == 1 and value.shape[0] == 1
            and shape[1] == 1 + grid[1] * grid[2] and _is_square(value.shape[1] - 1)):
        return resize_pos_embed(value[0], shape[1:], grid).unsqueeze(0)
    if value.dim() == 3 and len(shape) == 3 and grid is not None:
        source = _video_source_grid(value.shape[1], grid)
        if source is not None:
            return resize_grid_table(value[0], source, grid).unsqueeze(0)
    logger.warning("pos_embed: cannot interpolate %s to %s (model grid %s)", tuple(value.shape), tuple(shape), grid)
    return value


def resize_temporal_embed(value: torch.Tensor, frames: int) -> torch.Tensor:
    """A temporal table [1, F0, D] (SpaceTimeViT) for `frames` rows: its first ones when F0 > frames,
    else zero rows appended (Frozen-in-Time's and EgoVLP's default, `load_temporal_fix` "zeros")."""
    if value.shape[1] >= frames:
        return value[:, :frames]
    return torch.cat([value, value.new_zeros(value.shape[0], frames - value.shape[1], value.shape[2])], dim=1)


def position_grids(model: torch.nn.Module) -> Dict[str, Grid]:
    """State-dict key -> token grid of every position table in `model` whose module declares its
    grid in a `pos_grid` attribute (VideoViT, CLIPViT)."""
    flat_name = getattr(model, "flat_name", lambda name: name)
    return {
        flat_name(f"{name}.pos_embed" if name else "pos_embed"): tuple(module.pos_grid)
        for name, module in model.named_modules()
        if hasattr(module, "pos_grid")
    }
