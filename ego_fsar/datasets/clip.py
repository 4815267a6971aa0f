"""`ClipDataset`: the base of datasets whose items are clips cut from videos or frame folders.

A subclass lists its clips and says, for clip i, where its frames are (`clip_source`), its label
(`clip_label`) and extra meta data (`clip_meta`); datasets with optical flow or pose also say where
those are (`flow_frames`, `pose_frames`). The base class does the rest for every family: views,
temporal sampling, decoding, spatial transforms, pathway packing and retries on bad data.

Views (PySlowFast): the training split (`DATA.TRAIN_SPLIT`) yields one randomly sampled view per
clip; the test split (`TEST.SPLIT`) yields `TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS` items
per clip (item = clip * views + temporal * crops + spatial); any other split one centred view. An
item's `index` is its clip index, and `meta` carries `clip_index`, `temporal_index`, `spatial_index`
and `skipped` (failed samples this item replaced; see utils.load_with_retries). On any split but
the training one, an item that cannot be read is a `SkippedItem` marker instead (never another clip,
whose label would be wrong), which the loaders' `collate_skipping` drops and counts.

Modalities (DATA.MODALITIES, see modalities.py) are read for the same sampled frames and cropped
alike. An item's `inputs` is the pathway list of the FIRST modality, so a single-modality model
reads any of them; with several modalities the item also holds `modalities`, {name: pathway list}
of all of them (the first included), e.g. {"rgb": [slow, fast], "flow": [...], "pose": [...]}.
"""
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Union

import numpy as np
from fvcore.common.config import CfgNode

from .decoder import DECODER_REGISTRY
from .frame_files import FrameFiles
from .modalities import check_modalities, read_modalities, transform_modalities
from .pose import HeatmapFrames
from .sampling import sample_frame_indices
from .utils import FailureTracker, RetryingDataset, pack_pathway_output

if TYPE_CHECKING:
    from .egotoy import KeypointFile


@dataclass(frozen=True)
class ClipSource:
    """Where a clip's frames are: `path` (video file or frame folder), its first frame `start`
    (0-based position in the video), its length `num_frames`, and the video's `fps` (None: unknown)."""

    path: str
    start: int
    num_frames: int
    fps: Optional[float] = None


class ClipDataset(RetryingDataset):
    """Base class; subclasses implement `labels`, `class_names`, `clip_source`, `clip_label`, `clip_meta`."""

    def __init__(self, cfg: CfgNode, split: str):
        self.cfg = cfg
        self.split = split
        self.training = split == cfg.DATA.TRAIN_SPLIT
        multiview = not self.training and split == cfg.TEST.SPLIT
        self.num_temporal_views = cfg.TEST.NUM_ENSEMBLE_VIEWS if multiview else 1
        self.num_spatial_crops = cfg.TEST.NUM_SPATIAL_CROPS if multiview else 1
        self.failures = FailureTracker(cfg.DATA_LOADER.MAX_FAILURES)
        self.reader_class = DECODER_REGISTRY.get(cfg.DATA.DECODING_BACKEND)
        check_modalities(cfg.DATA.MODALITIES)
        self.modalities = list(cfg.DATA.MODALITIES)

    labels: List[int]
    class_names: List[str]

    @abstractmethod
    def clip_source(self, clip: int) -> ClipSource:
        """Where clip `clip`'s frames are."""

    @abstractmethod
    def clip_label(self, clip: int) -> Union[int, Dict[str, int]]:
        """The training label of clip `clip` (int, or dict such as {"verb": v, "noun": n})."""

    @abstractmethod
    def clip_meta(self, clip: int) -> Dict:
        """Strings and ints describing clip `clip` (video id, frame range, ...)."""

    @property
    def num_clips(self) -> int:
        return len(self.labels)

    @property
    def num_views(self) -> int:
        """Items per clip."""
        return self.num_temporal_views * self.num_spatial_crops

    def __len__(self) -> int:
        return self.num_clips * self.num_views

    def _view(self, view: int) -> tuple:
        """(temporal, spatial) sampling indices of view `view` of a clip; (-1, -1) at training."""
        if self.training:
            return -1, -1
        temporal, spatial = divmod(view, self.num_spatial_crops)
        return temporal, spatial if self.num_spatial_crops > 1 else 1

    def frame_indices(self, clip: int, temporal: int) -> np.ndarray:
        """Positions in the video (0-based) of the frames of temporal view `temporal` (-1: random)."""
        source = self.clip_source(clip)
        return source.start + sample_frame_indices(self.cfg, source.num_frames, temporal, self.num_temporal_views,
                                                   source.fps)

    def read_rgb(self, clip: int, indices: np.ndarray) -> np.ndarray:
        """Decoded uint8 RGB frames [T,H,W,3] at video positions `indices` of clip `clip`."""
        return self.reader_class(self.clip_source(clip).path, self.cfg).read(indices)

    def read_frames(self, clip: int, temporal: int) -> np.ndarray:
        """Decoded uint8 RGB frames [T,H,W,C] of temporal view `temporal` (-1: random) of `clip`."""
        return self.read_rgb(clip, self.frame_indices(clip, temporal))

    def flow_frames(self, clip: int) -> FrameFiles:
        """Reader of clip `clip`'s optical flow (frame_files.py); datasets with flow override it."""
        raise ValueError(f"{type(self).__name__} has no optical flow: remove 'flow' from DATA.MODALITIES "
                         f"{self.modalities}")

    def pose_frames(self, clip: int) -> Union[HeatmapFrames, "KeypointFile"]:
        """Reader of clip `clip`'s pose (pose.py); datasets with pose override it."""
        raise ValueError(f"{type(self).__name__} has no pose: remove 'pose' from DATA.MODALITIES {self.modalities}")

    def load(self, index: int) -> Dict:
        """Item `index` without retries (raises DecodeError on unreadable data)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        clip, view = divmod(index, self.num_views)
        temporal, spatial = self._view(view)
        data = read_modalities(self, clip, self.frame_indices(clip, temporal), self.modalities)
        pathways = {name: pack_pathway_output(self.cfg, x)
                    for name, x in transform_modalities(self.cfg, data, spatial).items()}
        meta = dict(self.clip_meta(clip), clip_index=clip, temporal_index=temporal, spatial_index=spatial)
        item = {"inputs": pathways[self.modalities[0]], "label": self.clip_label(clip), "index": clip, "meta": meta}
        if len(pathways) > 1:
            item["modalities"] = pathways
        return item

