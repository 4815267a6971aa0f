"""Readers of per-frame data files other than RGB images: optical flow as u/v JPEG pairs (EPIC,
TSN/TBN) and arrays saved with numpy, one `.npy` file per frame (MM-CDFSL's flow and hand-pose
heatmaps).

Frame position i of a video (0-based, counted in RGB frames, as `ClipDataset.frame_indices` gives
them) is file number `i // stride + 1` of the folder, named `template.format(number)`: EPIC-55's
flow was extracted with a temporal stride of 2, so it has half as many frames as RGB. A missing
file is a DecodeError naming it, unless `repeat_last` (MM-CDFSL's rule): then positions past the
folder's last file read that file. Readers return float32 [T,H,W,C].
"""
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .utils import DecodeError


def repeat_last_frame(indices: np.ndarray, path_of: Callable[[int], str], count: Callable[[], int]) -> np.ndarray:
    """`indices` (0-based file positions) with those past the last of `count()` files replaced by the
    last one; the folder is counted only when the file of the largest index is missing."""
    if os.path.isfile(path_of(int(indices.max()))):
        return indices
    return np.minimum(indices, max(count() - 1, 0))


@dataclass(frozen=True)
class FrameFiles(ABC):
    """Base class: one file per frame, `folder/template.format(number)` (1-based numbers); subclasses
    implement `load(number) -> float32 [H,W,C]`."""

    folder: str
    template: str
    stride: int = 1
    repeat_last: bool = False

    def path(self, number: int) -> str:
        return os.path.join(self.folder, self.template.format(number))

    def count(self) -> int:
        """Files with the template's extension beside file 1 (lists the folder: avoid on huge folders)."""
        folder = os.path.dirname(self.path(1))
        if not os.path.isdir(folder):
            return 0
        ext = os.path.splitext(self.template.format(1))[1]
        return sum(name.endswith(ext) for name in os.listdir(folder))

    def numbers(self, indices: Sequence[int]) -> np.ndarray:
        """1-based file numbers of video frame positions `indices`."""
        positions = np.asarray(indices, dtype=np.int64) // self.stride
        if self.repeat_last:
            positions = repeat_last_frame(positions, lambda i: self.path(i + 1), self.count)
        return positions + 1

    @abstractmethod
    def load(self, number: int) -> np.ndarray:
        """float32 [H,W,C] of file `number`."""

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """float32 [T,H,W,C] of video frame positions `indices` (each file is read once)."""
        numbers = self.numbers(indices)
        frames = {}
        for n in np.unique(numbers).tolist():
            try:
                frames[n] = self.load(n)
            except (OSError, ValueError) as e:
                raise DecodeError(self.path(n), f"cannot read frame file {n}: {e}") from e
        return np.stack([frames[n] for n in numbers.tolist()])


@dataclass(frozen=True)
class NpyFrames(FrameFiles):
    """One array [H,W,C] per frame (`np.save`), e.g. MM-CDFSL's flow [224,224,2] and hand-pose heatmaps
    [56,56,21]; float values are kept and uint8 ones divided by 255 (torchvision's ToTensor, which
    MM-CDFSL applies). `channels` (0: any) is checked."""

    channels: int = 0

    def load(self, number: int) -> np.ndarray:
        array = np.load(self.path(number))
        if array.ndim != 3 or (self.channels and array.shape[-1] != self.channels):
            raise ValueError(f"expected an array [H,W,{self.channels or 'C'}], got shape {array.shape}")
        return array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)


@dataclass(frozen=True)
class FlowJpegFrames(FrameFiles):
    """Optical flow as grey JPEGs `folder/u/<file>` (x) and `folder/v/<file>` (y), coding
    [-bound, bound] pixels as 128 +- 127.5 grey levels (the TV-L1 frames of dense_flow, whose default
    bound is 20, and EgoToy's); read back as flow in pixels [H,W,2]."""

    bound: float = 20.0

    def path(self, number: int) -> str:
        return os.path.join(self.folder, "u", self.template.format(number))

    def load(self, number: int) -> np.ndarray:
        name = self.template.format(number)
        planes = []
        for axis in "uv":
            with Image.open(os.path.join(self.folder, axis, name)) as img:
                planes.append(np.asarray(img.convert("L"), dtype=np.float32))
        return (np.stack(planes, axis=-1) - 128.0) * (self.bound / 127.5)
