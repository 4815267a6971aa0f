"""Video decoders: read given frames of one video as uint8 [T,H,W,C] RGB.

`DATA.DECODING_BACKEND` picks a reader from DECODER_REGISTRY: "frames" (a folder of JPEGs, one file
per frame), "decord" or "pyav" (a video file). Frame indices are 0-based positions in the video;
frame folders are numbered from 1 (file `DATA.FRAME_TEMPLATE.format(i + 1)` holds frame i). Each
reader touches only what the requested frames need: the frame folder opens only their files, the
video readers seek to the keyframe before the first one and stop after the last one.
"""
import os
from fractions import Fraction
from typing import Sequence, Union

import av
import decord
import numpy as np
from fvcore.common.config import CfgNode
from PIL import Image

from .utils import DecodeError, NamedRegistry

DECODER_REGISTRY = NamedRegistry("DATA.DECODING_BACKEND")
DECODER_REGISTRY.__doc__ = """Video readers by backend name, built as `cls(path, cfg)`: `read(indices) -> uint8
[T,H,W,C]`, `num_frames`, `fps`; class attribute FRAME_FOLDER (True: `path` is a folder of frames)."""


def _unique(indices: Sequence[int]) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0:
        raise ValueError(f"expected a non-empty 1-D list of frame indices, got shape {indices.shape}")
    return np.unique(indices)


def _gather(frames: dict, indices: Sequence[int]) -> np.ndarray:
    """Stack decoded frames {index: [H,W,C]} in the order (and with the repeats) of `indices`."""
    return np.stack([frames[int(i)] for i in indices])


@DECODER_REGISTRY.register("frames")
class FrameFolderReader:
    """A folder of per-frame image files named by `DATA.FRAME_TEMPLATE` (EPIC: frame_0000000001.jpg)."""

    FRAME_FOLDER = True

    def __init__(self, path: str, cfg: CfgNode):
        self.path = path
        self.template = cfg.DATA.FRAME_TEMPLATE
        if not os.path.isdir(path):
            raise DecodeError(path, "frame folder does not exist")

    @property
    def num_frames(self) -> int:
        """Number of files with the template's extension (lists the folder: avoid on huge folders)."""
        ext = os.path.splitext(self.template.format(1))[1]
        return sum(name.endswith(ext) for name in os.listdir(self.path))

    @property
    def fps(self) -> None:
        """Frame folders do not store a frame rate."""
        return None

    def frame_path(self, index: int) -> str:
        return os.path.join(self.path, self.template.format(index + 1))

    def read(self, indices: Sequence[int]) -> np.ndarray:
        frames = {}
        for i in _unique(indices):
            path = self.frame_path(int(i))
            try:
                with Image.open(path) as img:
                    frames[int(i)] = np.asarray(img.convert("RGB"))
            except (OSError, ValueError) as e:
                raise DecodeError(path, f"cannot read frame {int(i)}: {e}") from e
        return _gather(frames, indices)


@DECODER_REGISTRY.register("decord")
class DecordReader:
    """A video file read with decord (random access by frame index)."""

    FRAME_FOLDER = False

    def __init__(self, path: str, cfg: CfgNode):
        self.path = path
        threads = 0 if cfg.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE else 1
        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        except (decord.DECORDError, RuntimeError) as e:
            raise DecodeError(path, f"cannot open video: {e}") from e

    @property
    def num_frames(self) -> int:
        return len(self._reader)

    @property
    def fps(self) -> float:
        return float(self._reader.get_avg_fps())

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = _unique(indices)
        if wanted[0] < 0 or wanted[-1] >= self.num_frames:
            raise DecodeError(self.path, f"frames {wanted[0]}..{wanted[-1]} outside 0..{self.num_frames - 1}")
        try:
            batch = self._reader.get_batch(wanted.tolist()).asnumpy()
        except (decord.DECORDError, RuntimeError) as e:
            raise DecodeError(self.path, f"cannot decode frames: {e}") from e
        return _gather(dict(zip(wanted.tolist(), batch)), indices)


@DECODER_REGISTRY.register("pyav")
class PyAVReader:
    """A video file read with PyAV: seek to the keyframe before the first wanted frame, decode until
    the last one. Frame i is the frame presented at time i / fps (constant frame rate)."""

    FRAME_FOLDER = False

    def __init__(self, path: str, cfg: CfgNode):
        self.path = path
        try:
            self._container = av.open(path)
            self._stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError) as e:
            raise DecodeError(path, f"cannot open video: {e}") from e
        if cfg.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE:
            self._stream.thread_type = "AUTO"
        self._rate = Fraction(self._stream.average_rate)
        self._time_base = Fraction(self._stream.time_base)
        self._start = self._stream.start_time or 0

    @property
    def num_frames(self) -> int:
        """Frame count from the stream, else from the stream's or the container's duration (WebM and
        Matroska store neither a count nor a stream duration)."""
        if self._stream.frames:
            return self._stream.frames
        if self._stream.duration:
            return int(self._stream.duration * self._time_base * self._rate)
        return int(Fraction(self._container.duration or 0, av.time_base) * self._rate)

    @property
    def fps(self) -> float:
        return float(self._rate)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = _unique(indices)
        if wanted[0] < 0:
            raise DecodeError(self.path, f"negative frame index {wanted[0]}")
        todo, frames = set(wanted.tolist()), {}
        try:
            seek_pts = self._start + int(Fraction(int(wanted[0])) / self._rate / self._time_base)
            self._container.seek(seek_pts, stream=self._stream, backward=True, any_frame=False)
            for frame in self._container.decode(self._stream):
                index = round((frame.pts - self._start) * self._time_base * self._rate)
                if index in todo:
                    frames[index] = frame.to_ndarray(format="rgb24")
                    todo.discard(index)
                if index >= wanted[-1]:
                    break
        except av.FFmpegError as e:
            raise DecodeError(self.path, f"cannot decode frames: {e}") from e
        if todo:
            raise DecodeError(self.path, f"frames {sorted(todo)} not found (video has {self.num_frames} frames)")
        return _gather(frames, indices)


def open_video(cfg: CfgNode, path: str) -> Union[FrameFolderReader, DecordReader, PyAVReader]:
    """A reader for `path` (video file or frame folder) with `cfg.DATA.DECODING_BACKEND`."""
    return DECODER_REGISTRY.get(cfg.DATA.DECODING_BACKEND)(path, cfg)
