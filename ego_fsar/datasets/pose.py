"""Pose of a clip, as the model sees it: one heatmap per joint (MM-CDFSL: 21 hand joints, 56 x 56).

Datasets give pose either as heatmaps (`Heatmaps`, e.g. MM-CDFSL's per-frame `.npy` files read by
`HeatmapFrames`) or as keypoints (`Keypoints`, e.g. EgoToy's glyph corners), which are rendered as
Gaussians. Both are cropped with a clip's SpatialParams: the crop box, as fractions of the frame,
maps proportionally onto the heatmaps or the keypoint coordinates, so pose stays aligned with the
RGB crop whatever its resolution.
"""
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import torch

from .frame_files import NpyFrames
from .transform import SpatialParams, spatial_transform


@dataclass(frozen=True)
class Heatmaps:
    """Heatmaps float32 [T,H,W,K] of K joints."""

    maps: np.ndarray

    @property
    def frame_size(self) -> Tuple[int, int]:
        return tuple(self.maps.shape[1:3])

    def render(self, params: SpatialParams, size: int, sigma: float) -> torch.Tensor:
        """[T,K,size,size]: the crop of `params` resampled to size x size (`sigma` is not used)."""
        return spatial_transform(torch.from_numpy(self.maps).permute(0, 3, 1, 2), params, size)


@dataclass(frozen=True)
class Keypoints:
    """Keypoints float [T,K,2] as (x, y) pixels of frames of `frame_size` (height, width), with (0, 0)
    the top-left corner of the frame (pixel (i, j) covers [j, j + 1) x [i, i + 1))."""

    points: np.ndarray
    frame_size: Tuple[int, int]

    def render(self, params: SpatialParams, size: int, sigma: float) -> torch.Tensor:
        """[T,K,size,size]: a Gaussian of std `sigma` (output pixels) with peak 1 at each keypoint,
        mapped through the crop box of `params` (and mirrored with it)."""
        x0, y0, x1, y1 = params.box
        height, width = self.frame_size
        points = torch.as_tensor(self.points, dtype=torch.float32)
        x = (points[..., 0] / width - x0) / (x1 - x0) * size
        y = (points[..., 1] / height - y0) / (y1 - y0) * size
        if params.flip:
            x = size - x
        centres = torch.arange(size, dtype=torch.float32) + 0.5
        gx = torch.exp(-(centres - x[..., None]) ** 2 / (2 * sigma ** 2))
        gy = torch.exp(-(centres - y[..., None]) ** 2 / (2 * sigma ** 2))
        return gy[..., :, None] * gx[..., None, :]


@dataclass(frozen=True)
class HeatmapFrames:
    """Heatmaps stored one array [H,W,K] per frame (MM-CDFSL's `hand-pose/heatmap/.../000001.npy`)."""

    files: NpyFrames

    def read(self, indices: Sequence[int]) -> Heatmaps:
        return Heatmaps(self.files.read(indices))
