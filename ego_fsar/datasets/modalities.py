"""Modalities of a clip: what a dataset reads for each name in DATA.MODALITIES and how it becomes a
model input [C,T,H,W].

- "rgb": decoded frames uint8 [T,H,W,3] (`dataset.read_rgb`), the PySlowFast pipeline of
  `transform.clip_transform` (colour jitter and DATA.MEAN / STD are RGB's alone): [3,T,S,S].
- "flow": optical flow in pixels float32 [T,H,W,2] (`dataset.flow_frames(clip)`: u/v JPEGs or
  `.npy` files), cropped like RGB, x negated when mirrored, normalised by DATA.FLOW_MEAN / FLOW_STD:
  [2,T,S,S] (S: the crop size).
- "pose": heatmaps or keypoints (`dataset.pose_frames(clip)`, see pose.py) as one heatmap per joint
  of DATA.POSE_SIZE, normalised by DATA.POSE_MEAN / POSE_STD: [K,T,POSE_SIZE,POSE_SIZE].

Every modality reads the same frames (the video positions the clip's temporal sampling picked; a
reader maps them to its own files, e.g. EPIC-55's half-rate flow). With
DATA.SAME_CROP_ACROSS_MODALITIES the scale, crop and flip are drawn once, on the first modality's
frames, and mapped proportionally onto the others (so pose stays on the hands RGB shows); without
it each modality draws its own and pose takes the centre.
"""
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Dict, Sequence, Tuple, Union

import numpy as np
import torch
from fvcore.common.config import CfgNode

from .pose import Heatmaps, Keypoints
from .transform import SpatialParams, clip_transform, normalize, sample_spatial_params, spatial_transform
from .utils import NamedRegistry, Rng

if TYPE_CHECKING:
    from .clip import ClipDataset

# What a modality reads for a clip: frames [T, H, W, C], pose heatmaps or keypoints.
ModalityData = Union[np.ndarray, Heatmaps, Keypoints]
MODALITY_REGISTRY = NamedRegistry("DATA.MODALITIES")
MODALITY_REGISTRY.__doc__ = """Modalities by name (subclasses of Modality)."""


class Modality(ABC):
    """How one modality of a clip is read and transformed."""

    @staticmethod
    @abstractmethod
    def read(dataset: "ClipDataset", clip: int, indices: np.ndarray) -> ModalityData:
        """The modality's data for frames `indices` (0-based positions in the video) of clip `clip`."""

    @staticmethod
    def frame_size(data: ModalityData) -> Tuple[int, int]:
        """(height, width) of the frames of `data` (arrays [T,H,W,C]; other data override this)."""
        return tuple(data.shape[1:3])

    @staticmethod
    @abstractmethod
    def transform(cfg: CfgNode, data: ModalityData, params: SpatialParams, spatial_idx: int,
                  rng: Rng = np.random) -> torch.Tensor:
        """Model input float [C,T,H,W] of `data` cropped with `params` (view `spatial_idx`; -1: training)."""

    @classmethod
    def own_params(cls, cfg: CfgNode, data: ModalityData, spatial_idx: int,
                   rng: Rng = np.random) -> SpatialParams:
        """Spatial sampling drawn for this modality alone (DATA.SAME_CROP_ACROSS_MODALITIES False)."""
        return sample_spatial_params(cfg, *cls.frame_size(data), spatial_idx, rng)


@MODALITY_REGISTRY.register("rgb")
class Rgb(Modality):
    @staticmethod
    def read(dataset: "ClipDataset", clip: int, indices: np.ndarray) -> np.ndarray:
        return dataset.read_rgb(clip, indices)

    @staticmethod
    def transform(cfg: CfgNode, data: np.ndarray, params: SpatialParams, spatial_idx: int,
                  rng: Rng = np.random) -> torch.Tensor:
        return clip_transform(cfg, torch.from_numpy(data), spatial_idx, rng, params)


@MODALITY_REGISTRY.register("flow")
class Flow(Modality):
    @staticmethod
    def read(dataset: "ClipDataset", clip: int, indices: np.ndarray) -> np.ndarray:
        return dataset.flow_frames(clip).read(indices)

    @staticmethod
    def transform(cfg: CfgNode, data: np.ndarray, params: SpatialParams, spatial_idx: int,
                  rng: Rng = np.random) -> torch.Tensor:
        """Flow values are not rescaled with the frames (as TSN, TBN and MM-CDFSL read flow)."""
        flow = spatial_transform(torch.from_numpy(data).permute(0, 3, 1, 2), params)
        if params.flip:
            flow = flow * flow.new_tensor([-1.0, 1.0]).view(1, 2, 1, 1)
        return normalize(flow, cfg.DATA.FLOW_MEAN, cfg.DATA.FLOW_STD).permute(1, 0, 2, 3).contiguous()


@MODALITY_REGISTRY.register("pose")
class Pose(Modality):
    @staticmethod
    def read(dataset: "ClipDataset", clip: int, indices: np.ndarray) -> Union[Heatmaps, Keypoints]:
        return dataset.pose_frames(clip).read(indices)

    @staticmethod
    def frame_size(data: Union[Heatmaps, Keypoints]) -> Tuple[int, int]:
        return data.frame_size

    @staticmethod
    def transform(cfg: CfgNode, data: Union[Heatmaps, Keypoints], params: SpatialParams, spatial_idx: int,
                  rng: Rng = np.random) -> torch.Tensor:
        maps = data.render(params, cfg.DATA.POSE_SIZE, cfg.DATA.POSE_SIGMA)
        return ((maps - cfg.DATA.POSE_MEAN) / cfg.DATA.POSE_STD).permute(1, 0, 2, 3).contiguous()

    @classmethod
    def own_params(cls, cfg: CfgNode, data: Union[Heatmaps, Keypoints], spatial_idx: int,
                   rng: Rng = np.random) -> SpatialParams:
        """The centre of the frame, never mirrored."""
        return sample_spatial_params(cfg, *cls.frame_size(data), 1, rng)


def check_modalities(names: Sequence[str]) -> None:
    """Raise unless `names` (DATA.MODALITIES) are distinct registered modalities, at least one."""
    if not names or len(set(names)) != len(names):
        raise ValueError(f"DATA.MODALITIES must name distinct modalities, at least one, got {list(names)}")
    for name in names:
        MODALITY_REGISTRY.get(name)


def read_modalities(dataset: "ClipDataset", clip: int, indices: np.ndarray, names: Sequence[str]) -> Dict[str, object]:
    """{name: data} of modalities `names` of clip `clip`, all for the frames `indices`."""
    return {name: MODALITY_REGISTRY.get(name).read(dataset, clip, indices) for name in names}


def transform_modalities(cfg: CfgNode, data: Dict[str, object], spatial_idx: int,
                         rng: Rng = np.random) -> Dict[str, torch.Tensor]:
    """{name: float [C,T,H,W]} of `data` (from `read_modalities`), view `spatial_idx` (-1: training)."""
    modalities = {name: MODALITY_REGISTRY.get(name) for name in data}
    first = next(iter(data))
    shared = None
    if cfg.DATA.SAME_CROP_ACROSS_MODALITIES:
        shared = sample_spatial_params(cfg, *modalities[first].frame_size(data[first]), spatial_idx, rng)
    out = {}
    for name, modality in modalities.items():
        params = shared or modality.own_params(cfg, data[name], spatial_idx, rng)
        out[name] = modality.transform(cfg, data[name], params, spatial_idx, rng)
    return out
