"""`VideoWindows`: clips given as (video, start frame, number of frames), e.g. whole videos or the
sliding windows of a long video that `tools/predict.py` labels.

Any video file or frame folder is read (`video_folder.open_any`). `probe_video` opens a video once for
its length and frame rate; `sliding_windows` cuts it into windows of a given duration every `stride`
seconds, the first starting at frame 0 and the last ending at the video's last frame, so that the
windows cover the whole video. A frame folder has no frame rate: its seconds are counted at
DATA.TARGET_FPS, the rate its frames are sampled at (see sampling.dense).

Not registered (its clips come from the caller): `VideoWindows(cfg, windows)`. Items are the test views
(TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS per window) of TEST.SPLIT, labels are -1, and the
item meta is {"video", "start_frame", "num_frames"}.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from fvcore.common.config import CfgNode

from .clip import ClipDataset, ClipSource
from .utils import DecodeError
from .video_folder import open_any


def probe_video(path: str, cfg: CfgNode) -> ClipSource:
    """The whole of video `path` (video file or frame folder); DecodeError naming it when it does not
    exist, cannot be opened or has no frames."""
    if not os.path.exists(path):
        raise DecodeError(path, "no such video file or frame folder")
    reader = open_any(path, cfg)
    return ClipSource(path, 0, reader.num_frames, reader.fps)


def window_starts(num_frames: int, window: int, stride: int) -> List[int]:
    """First frames of `window`-frame windows every `stride` frames over `num_frames` frames: 0, stride,
    ... and a last one ending at the last frame (one window from 0 when the video is shorter)."""
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be at least one frame")
    if stride > window:
        raise ValueError(f"a stride of {stride} frames longer than the window ({window} frames) leaves frames "
                         f"in no window")
    last = max(num_frames - window, 0)
    return list(range(0, last, stride)) + [last]


def frame_rate(video: ClipSource, cfg: CfgNode) -> float:
    """The video's frame rate, DATA.TARGET_FPS for a frame folder (none stored)."""
    return video.fps or float(cfg.DATA.TARGET_FPS)


def sliding_windows(video: ClipSource, window_sec: float, stride_sec: float, cfg: CfgNode) -> List[ClipSource]:
    """Windows of `window_sec` seconds every `stride_sec` seconds covering `video` (see `window_starts`)."""
    if not 0 < stride_sec <= window_sec:
        raise ValueError(f"the stride ({stride_sec} s) must be positive and at most the window ({window_sec} s): "
                         f"a longer one leaves frames in no window")
    fps = frame_rate(video, cfg)
    window = min(max(1, round(window_sec * fps)), video.num_frames)
    stride = min(max(1, round(stride_sec * fps)), window)
    return [ClipSource(video.path, video.start + s, window, video.fps)
            for s in window_starts(video.num_frames, window, stride)]


class VideoWindows(ClipDataset):
    """Clips `windows` (ClipSource: path, first frame, frames, fps) of `split` (default TEST.SPLIT)."""

    def __init__(self, cfg: CfgNode, windows: Sequence[ClipSource], split: Optional[str] = None):
        super().__init__(cfg, cfg.TEST.SPLIT if split is None else split)
        if not windows:
            raise ValueError("VideoWindows needs at least one window")
        self.windows = list(windows)
        self.labels = [-1] * len(self.windows)
        self.class_names = []

    def clip_source(self, clip: int) -> ClipSource:
        return self.windows[clip]

    def read_rgb(self, clip: int, indices: np.ndarray) -> np.ndarray:
        return open_any(self.windows[clip].path, self.cfg).read(indices)

    def clip_label(self, clip: int) -> int:
        return -1

    def clip_meta(self, clip: int) -> Dict:
        w = self.windows[clip]
        return {"video": w.path, "start_frame": w.start, "num_frames": w.num_frames}
