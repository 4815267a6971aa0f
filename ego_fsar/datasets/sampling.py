"""Temporal sampling: which frames of a clip (or video) of `video_size` frames a model sees.

`DATA.TEMPORAL_SAMPLING` picks a sampler from TEMPORAL_SAMPLER_REGISTRY:
- "dense" (PySlowFast): `NUM_FRAMES` frames `SAMPLING_RATE` apart (rescaled by fps / TARGET_FPS),
  from a random start at training and from `num_views` uniformly spaced starts at test;
- "segment" (TSN): the clip is cut into `NUM_FRAMES` equal segments and one frame is taken from each,
  at a random offset at training and at the centre at test (view v of V at offset (v + 0.5) / V).
`view == -1` means training (random). `rng` is anything with numpy's RandomState interface
(`np.random` itself, the default, is seeded per worker by the DataLoader).
"""
import math
from typing import Optional

import numpy as np
import torch
from fvcore.common.config import CfgNode

from .utils import NamedRegistry, Rng

TEMPORAL_SAMPLER_REGISTRY = NamedRegistry("DATA.TEMPORAL_SAMPLING")
TEMPORAL_SAMPLER_REGISTRY.__doc__ = """Temporal samplers by name:
fn(cfg, video_size, view, num_views, fps, rng) -> int64 indices [NUM_FRAMES]."""


def get_start_end_idx(video_size: int, clip_size: float, clip_idx: int, num_clips: int,
                      use_offset: bool = False, rng: Rng = np.random) -> tuple:
    """Start and end (float, inclusive) of a clip of `clip_size` frames in a video of `video_size`.

    clip_idx -1 draws a random start; otherwise clip `clip_idx` of `num_clips` uniformly placed ones:
    at delta * i / n (PySlowFast's default) or, with `use_offset`, spread from the first to the last
    possible start (the centre one when n is 1)."""
    delta = max(video_size - clip_size, 0)
    if clip_idx == -1:
        start = rng.uniform(0, delta)
    elif use_offset:
        start = math.floor(delta / 2) if num_clips == 1 else clip_idx * math.floor(delta / (num_clips - 1))
    else:
        start = delta * clip_idx / num_clips
    return start, start + clip_size - 1


def temporal_sampling_indices(video_size: int, start: float, end: float, num_samples: int) -> np.ndarray:
    """`num_samples` evenly spaced indices from start to end, clamped to the video (PySlowFast)."""
    index = torch.linspace(start, end, num_samples)
    return torch.clamp(index, 0, video_size - 1).long().numpy()


def segment_indices(video_size: int, num_segments: int, view: int, num_views: int,
                    rng: Rng = np.random) -> np.ndarray:
    """One index per equal segment (TSN): random offsets when view is -1 (if every segment has a
    frame), else offset (view + 0.5) / num_views of each segment."""
    tick = video_size / num_segments
    starts = tick * np.arange(num_segments)
    if view == -1:
        length = video_size // num_segments
        if length > 0:
            return (length * np.arange(num_segments) + rng.randint(length, size=num_segments)).astype(np.int64)
        view, num_views = 0, 1
    return np.minimum((starts + tick * (view + 0.5) / num_views).astype(np.int64), video_size - 1)


@TEMPORAL_SAMPLER_REGISTRY.register("dense")
def dense(cfg: CfgNode, video_size: int, view: int, num_views: int, fps: Optional[float],
          rng: Rng = np.random) -> np.ndarray:
    """NUM_FRAMES indices SAMPLING_RATE apart (at TARGET_FPS; `fps` None: the video's own rate)."""
    scale = fps / cfg.DATA.TARGET_FPS if fps else 1.0
    clip_size = cfg.DATA.NUM_FRAMES * cfg.DATA.SAMPLING_RATE * scale
    start, end = get_start_end_idx(video_size, clip_size, view, num_views, cfg.DATA.USE_OFFSET_SAMPLING, rng)
    return temporal_sampling_indices(video_size, start, end, cfg.DATA.NUM_FRAMES)


@TEMPORAL_SAMPLER_REGISTRY.register("segment")
def segment(cfg: CfgNode, video_size: int, view: int, num_views: int, fps: Optional[float],
            rng: Rng = np.random) -> np.ndarray:
    """NUM_FRAMES TSN segment indices (fps is not used)."""
    return segment_indices(video_size, cfg.DATA.NUM_FRAMES, view, num_views, rng)


def sample_frame_indices(cfg: CfgNode, video_size: int, view: int, num_views: int,
                         fps: Optional[float] = None,
                         rng: Rng = np.random) -> np.ndarray:
    """0-based indices (int64 [NUM_FRAMES]) into a clip of `video_size` frames with
    `DATA.TEMPORAL_SAMPLING`; view -1 samples randomly (training)."""
    if video_size < 1:
        raise ValueError(f"cannot sample frames from a clip of {video_size} frames")
    sampler = TEMPORAL_SAMPLER_REGISTRY.get(cfg.DATA.TEMPORAL_SAMPLING)
    return sampler(cfg, video_size, view, num_views, fps, rng)
