"""Spatial transforms of a clip. Every random choice is drawn once per clip, so all its frames get the
same scale, crop, flip and colour change. Frames are [T,C,H,W] float in [0, 1] unless said otherwise;
`clip_transform` is the full pipeline from decoded uint8 [T,H,W,C] to the model's float [C,T,H,W].

Following PySlowFast: training takes a random short-side scale in TRAIN_JITTER_SCALES, a random
TRAIN_CROP_SIZE crop and a random flip; testing resizes the short side to TEST_CROP_SIZE and takes
crop `spatial_idx` (0, 1, 2: left/top, centre, right/bottom) of TEST_CROP_SIZE. `rng` is anything with
numpy's RandomState interface (default: the global `np.random`, seeded per DataLoader worker).
"""
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode


def short_side_scale(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [T,C,H,W] so that its shorter side is `size` (bilinear), keeping the aspect ratio."""
    height, width = frames.shape[-2:]
    if min(height, width) == size:
        return frames
    if width < height:
        new_h, new_w = int(math.floor(height / width * size)), size
    else:
        new_h, new_w = size, int(math.floor(width / height * size))
    return F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False)


def random_short_side_scale_jitter(frames: torch.Tensor, min_size: int, max_size: int,
                                   inverse_uniform: bool = False, rng=np.random) -> torch.Tensor:
    """Short side to a size drawn uniformly from [min_size, max_size] (or uniformly in 1/size)."""
    if inverse_uniform:
        size = int(round(1.0 / rng.uniform(1.0 / max_size, 1.0 / min_size)))
    else:
        size = int(round(rng.uniform(min_size, max_size)))
    return short_side_scale(frames, size)


def _check_crop(frames: torch.Tensor, size: int) -> None:
    if min(frames.shape[-2:]) < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of size {tuple(frames.shape[-2:])}")


def random_crop(frames: torch.Tensor, size: int, rng=np.random) -> torch.Tensor:
    """A random size x size crop, the same for every frame."""
    _check_crop(frames, size)
    height, width = frames.shape[-2:]
    y = rng.randint(0, height - size + 1)
    x = rng.randint(0, width - size + 1)
    return frames[..., y:y + size, x:x + size]


def uniform_crop(frames: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
    """Crop `spatial_idx` of three along the longer side: 0 start, 1 centre, 2 end."""
    if spatial_idx not in (0, 1, 2):
        raise ValueError(f"spatial_idx must be 0, 1 or 2, got {spatial_idx}")
    _check_crop(frames, size)
    height, width = frames.shape[-2:]
    y, x = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
    if spatial_idx != 1:
        if height > width:
            y = 0 if spatial_idx == 0 else height - size
        else:
            x = 0 if spatial_idx == 0 else width - size
    return frames[..., y:y + size, x:x + size]


def horizontal_flip(frames: torch.Tensor, prob: float, rng=np.random) -> torch.Tensor:
    """Mirror left-right with probability `prob`."""
    return frames.flip(-1) if rng.uniform() < prob else frames


def _luma(frames: torch.Tensor) -> torch.Tensor:
    """Grey level [T,1,H,W] of RGB frames [T,3,H,W] (ITU-R 601 weights)."""
    return (frames * frames.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _brightness(frames: torch.Tensor, factor: float) -> torch.Tensor:
    return frames * factor


def _contrast(frames: torch.Tensor, factor: float) -> torch.Tensor:
    mean = _luma(frames).mean()
    return (frames - mean) * factor + mean


def _saturation(frames: torch.Tensor, factor: float) -> torch.Tensor:
    luma = _luma(frames)
    return (frames - luma) * factor + luma


_COLOR_OPS = (_brightness, _contrast, _saturation)


def color_jitter(frames: torch.Tensor, strength: float, rng=np.random) -> torch.Tensor:
    """Brightness, contrast and saturation, each scaled by a factor from [1 - s, 1 + s], in a random
    order; input and output in [0, 1]."""
    for op in rng.permutation(len(_COLOR_OPS)):
        factor = float(rng.uniform(1 - strength, 1 + strength))
        frames = _COLOR_OPS[op](frames, factor).clamp(0, 1)
    return frames


def normalize(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(frames - mean) / std per channel of [T,C,H,W]."""
    mean = frames.new_tensor(mean).view(1, -1, 1, 1)
    std = frames.new_tensor(std).view(1, -1, 1, 1)
    return (frames - mean) / std


def spatial_sampling(cfg: CfgNode, frames: torch.Tensor, spatial_idx: int, rng=np.random) -> torch.Tensor:
    """Training (spatial_idx -1): scale jitter, random crop, flip. Testing: short side to
    TEST_CROP_SIZE, then crop `spatial_idx` of TEST_CROP_SIZE."""
    if spatial_idx == -1:
        min_size, max_size = cfg.DATA.TRAIN_JITTER_SCALES
        frames = random_short_side_scale_jitter(frames, min_size, max_size, cfg.DATA.INV_UNIFORM_SAMPLE, rng)
        frames = random_crop(frames, cfg.DATA.TRAIN_CROP_SIZE, rng)
        return horizontal_flip(frames, 0.5, rng) if cfg.DATA.RANDOM_FLIP else frames
    frames = short_side_scale(frames, cfg.DATA.TEST_CROP_SIZE)
    return uniform_crop(frames, cfg.DATA.TEST_CROP_SIZE, spatial_idx)


def clip_transform(cfg: CfgNode, frames: torch.Tensor, spatial_idx: int, rng=np.random) -> torch.Tensor:
    """Decoded uint8 [T,H,W,C] -> normalised float [C,T,H,W]: spatial sampling, colour jitter at
    training (DATA.COLOR_JITTER > 0), then (x - MEAN) / STD on [0, 1] values."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T,H,W,3], got {frames.dtype} {tuple(frames.shape)}")
    frames = frames.permute(0, 3, 1, 2).float().div_(255.0)
    frames = spatial_sampling(cfg, frames, spatial_idx, rng)
    if spatial_idx == -1 and cfg.DATA.COLOR_JITTER > 0:
        frames = color_jitter(frames, cfg.DATA.COLOR_JITTER, rng)
    frames = normalize(frames, cfg.DATA.MEAN, cfg.DATA.STD)
    return frames.permute(1, 0, 2, 3).contiguous()
