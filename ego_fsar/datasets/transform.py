"""Spatial transforms of a clip. Every random choice is drawn once per clip, so all its frames get the
same scale, crop, flip and colour change; the spatial ones (`SpatialParams`) can also be shared by
every modality of the clip (see modalities.py). Frames are [T,C,H,W] float in [0, 1] unless said
otherwise; `clip_transform` is the RGB pipeline from decoded uint8 [T,H,W,C] to the model's float
[C,T,H,W].

Following PySlowFast: training takes a random short-side scale in TRAIN_JITTER_SCALES, a random
TRAIN_CROP_SIZE crop and a random flip; testing resizes the short side to TEST_CROP_SIZE and takes
crop `spatial_idx` (0, 1, 2: left/top, centre, right/bottom) of TEST_CROP_SIZE, or, with
DATA.TEST_NO_CROP, resizes the whole frame to TEST_CROP_SIZE x TEST_CROP_SIZE (MM-CDFSL). Frames of another
resolution than those the parameters were drawn for are resampled from the same crop box, mapped
proportionally. `rng` is anything with numpy's RandomState interface (default: the global
`np.random`, seeded per DataLoader worker).
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode

from .utils import Rng


@dataclass(frozen=True)
class SpatialParams:
    """One clip's spatial sampling, drawn for frames of `height` x `width`: the short side scaled to
    `scale`, a `size` x `size` crop at (`y`, `x`) of the scaled frames, then a mirror if `flip`; or, with
    `whole`, the whole frame resized to `size` x `size` (aspect ratio not kept; scale, y, x unused)."""

    height: int
    width: int
    scale: int
    y: int
    x: int
    size: int
    flip: bool
    whole: bool = False

    @property
    def box(self) -> Tuple[float, float, float, float]:
        """The crop as (x0, y0, x1, y1), fractions of the frame's width and height."""
        if self.whole:
            return 0.0, 0.0, 1.0, 1.0
        height, width = scaled_size(self.height, self.width, self.scale)
        return self.x / width, self.y / height, (self.x + self.size) / width, (self.y + self.size) / height


def scaled_size(height: int, width: int, size: int) -> Tuple[int, int]:
    """(height, width) after `short_side_scale` to `size`."""
    if min(height, width) == size:
        return height, width
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def short_side_scale(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [T,C,H,W] so that its shorter side is `size` (bilinear), keeping the aspect ratio."""
    height, width = frames.shape[-2:]
    if min(height, width) == size:
        return frames
    return F.interpolate(frames, size=scaled_size(height, width, size), mode="bilinear", align_corners=False)


def uniform_crop_position(height: int, width: int, size: int, spatial_idx: int) -> Tuple[int, int]:
    """(y, x) of crop `spatial_idx` of three along the longer side: 0 start, 1 centre, 2 end."""
    if spatial_idx not in (0, 1, 2):
        raise ValueError(f"spatial_idx must be 0, 1 or 2, got {spatial_idx}")
    y, x = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
    if spatial_idx != 1:
        if height > width:
            y = 0 if spatial_idx == 0 else height - size
        else:
            x = 0 if spatial_idx == 0 else width - size
    return y, x


def sample_spatial_params(cfg: CfgNode, height: int, width: int, spatial_idx: int,
                          rng: Rng = np.random) -> SpatialParams:
    """Training (spatial_idx -1): a short side drawn from TRAIN_JITTER_SCALES (uniformly, or uniformly
    in 1/size with INV_UNIFORM_SAMPLE), a random TRAIN_CROP_SIZE crop and, with RANDOM_FLIP, a flip
    with probability 0.5. Testing: short side TEST_CROP_SIZE and crop `spatial_idx` of TEST_CROP_SIZE, or
    with DATA.TEST_NO_CROP the whole frame (every `spatial_idx`)."""
    if spatial_idx != -1 and cfg.DATA.TEST_NO_CROP:
        size = cfg.DATA.TEST_CROP_SIZE
        return SpatialParams(height, width, size, 0, 0, size, False, whole=True)
    if spatial_idx == -1:
        min_size, max_size = cfg.DATA.TRAIN_JITTER_SCALES
        if cfg.DATA.INV_UNIFORM_SAMPLE:
            scale = int(round(1.0 / rng.uniform(1.0 / max_size, 1.0 / min_size)))
        else:
            scale = int(round(rng.uniform(min_size, max_size)))
        size = cfg.DATA.TRAIN_CROP_SIZE
    else:
        scale = size = cfg.DATA.TEST_CROP_SIZE
    scaled_h, scaled_w = scaled_size(height, width, scale)
    if min(scaled_h, scaled_w) < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of size {(scaled_h, scaled_w)}")
    if spatial_idx == -1:
        y, x = rng.randint(0, scaled_h - size + 1), rng.randint(0, scaled_w - size + 1)
        flip = bool(cfg.DATA.RANDOM_FLIP and rng.uniform() < 0.5)
    else:
        (y, x), flip = uniform_crop_position(scaled_h, scaled_w, size, spatial_idx), False
    return SpatialParams(height, width, scale, int(y), int(x), size, flip)


def crop_box(frames: torch.Tensor, box: Sequence[float], size: int) -> torch.Tensor:
    """Region `box` (x0, y0, x1, y1 as fractions of the frame) of [T,C,H,W] resampled bilinearly to
    size x size: output pixel centres map proportionally into the box (exact for any frame size)."""
    x0, y0, x1, y1 = box
    theta = frames.new_tensor([[x1 - x0, 0.0, x0 + x1 - 1.0], [0.0, y1 - y0, y0 + y1 - 1.0]])
    grid = F.affine_grid(theta.expand(len(frames), 2, 3), [len(frames), frames.shape[1], size, size],
                         align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


def spatial_transform(frames: torch.Tensor, params: SpatialParams, size: Optional[int] = None) -> torch.Tensor:
    """Apply `params` to [T,C,H,W]: frames of the size they were drawn for, to the crop's own size,
    are scaled and cropped exactly as drawn (PySlowFast); other frames (another resolution, or
    another output `size`) and whole-frame params are resampled from the box (`crop_box`). Mirrored if
    `params.flip`."""
    size = params.size if size is None else size
    if not params.whole and tuple(frames.shape[-2:]) == (params.height, params.width) and size == params.size:
        frames = short_side_scale(frames, params.scale)[..., params.y:params.y + size, params.x:params.x + size]
    else:
        frames = crop_box(frames, params.box, size)
    return frames.flip(-1) if params.flip else frames


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


def color_jitter(frames: torch.Tensor, strength: float,
                 rng: Rng = np.random) -> torch.Tensor:
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


def clip_transform(cfg: CfgNode, frames: torch.Tensor, spatial_idx: int,
                   rng: Rng = np.random,
                   params: Optional[SpatialParams] = None) -> torch.Tensor:
    """RGB: decoded uint8 [T,H,W,3] -> normalised float [C,T,H,W]: spatial sampling (`params`, drawn
    here for the frames when None), colour jitter at training (DATA.COLOR_JITTER > 0), (x - MEAN) / STD
    on [0, 1] values, and RGB -> BGR with DATA.REVERSE_INPUT_CHANNEL."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T,H,W,3], got {frames.dtype} {tuple(frames.shape)}")
    if params is None:
        params = sample_spatial_params(cfg, frames.shape[1], frames.shape[2], spatial_idx, rng)
    frames = spatial_transform(frames.permute(0, 3, 1, 2).float().div_(255.0), params)
    if spatial_idx == -1 and cfg.DATA.COLOR_JITTER > 0:
        frames = color_jitter(frames, cfg.DATA.COLOR_JITTER, rng)
    frames = normalize(frames, cfg.DATA.MEAN, cfg.DATA.STD)
    if cfg.DATA.REVERSE_INPUT_CHANNEL:
        frames = frames[:, [2, 1, 0]]
    return frames.permute(1, 0, 2, 3).contiguous()
