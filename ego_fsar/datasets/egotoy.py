"""The EgoToy dataset: reads the demo data set written by egotoy_writer (`tools/make_egotoy.py`) in
EPIC-Kitchens-100's layout: RGB frames or videos, and optical flow and glyph keypoints when written.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .egotoy_writer import PREFIX
from .epickitchens import EpicKitchens
from .pose import Keypoints
from .utils import DecodeError

DEFAULT_ROOT = os.path.join("data", "egotoy")


@dataclass(frozen=True)
class KeypointFile:
    """The keypoints of one EgoToy video (`P01/pose/P01_01.json`)."""

    path: str

    def read(self, indices: Sequence[int]) -> Keypoints:
        """Keypoints of the video's frames `indices` (0-based)."""
        try:
            with open(self.path) as f:
                record = json.load(f)
            points = np.asarray(record["frames"], dtype=np.float32)
            frame_size = tuple(record["frame_size"])
        except (OSError, ValueError, KeyError) as e:
            raise DecodeError(self.path, f"cannot read keypoints: {e!r}") from e
        indices = np.asarray(indices, dtype=np.int64)
        if points.ndim != 3 or points.shape[-1] != 2 or not 0 <= indices.min() <= indices.max() < len(points):
            raise DecodeError(self.path, f"expected keypoints [frames,K,2] covering frames {indices.min()}.."
                                         f"{indices.max()}, got shape {points.shape}")
        return Keypoints(points[indices], frame_size)


@DATASET_REGISTRY.register()
class EgoToy(EpicKitchens):
    """EgoToy through the EPIC-Kitchens reader. DATA.PATH_PREFIX defaults to data/egotoy and
    DATA.PATH_TO_DATA_DIR to its annotations folder; splits: train, val, test, fewshot_val. Optical
    flow and pose (the glyph's KEYPOINTS) when written with `write_flow` / `write_pose`."""

    ANNOTATION_PREFIX = PREFIX
    SPLIT_FILES: Dict[str, str] = {}

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        if self.training and cfg.DATA.RANDOM_FLIP:
            raise ValueError("EgoToy's actions change under a horizontal flip (left/right, clockwise/"
                             "anticlockwise): set DATA.RANDOM_FLIP False")

    @classmethod
    def data_paths(cls, cfg: CfgNode) -> Tuple[str, str]:
        root = cfg.DATA.PATH_PREFIX or DEFAULT_ROOT
        annotations = cfg.DATA.PATH_TO_DATA_DIR or os.path.join(root, "annotations")
        if not os.path.isdir(annotations):
            raise FileNotFoundError(f"EgoToy annotations not found in {annotations!r}: write the data set with "
                                    f"`python tools/make_egotoy.py --out {root}`")
        return annotations, root

    def flow_stride(self, video_id: str) -> int:
        """One flow frame per RGB frame."""
        return 1

    def pose_frames(self, clip: int) -> KeypointFile:
        s = self.segments[clip]
        return KeypointFile(os.path.join(self.frames_root, s.participant_id, "pose", s.video_id + ".json"))
