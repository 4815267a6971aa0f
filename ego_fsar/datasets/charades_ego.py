"""Charades and Charades-Ego frame lists (PySlowFast's and Ego-Exo's Charades format).

`<DATA.PATH_TO_DATA_DIR>/<file>.csv` is a space-separated frame list with a header line:

    original_vido_id video_id frame_id path labels
    46GP8 0 0 46GP8/46GP8-000001.jpg ""
    46GP8 0 1 46GP8/46GP8-000002.jpg "12,97"

one line per frame, `path` relative to DATA.PATH_PREFIX, `labels` the frame's comma-separated class
ids (quoted, possibly empty). A clip is a video (its frames in file order, grouped by
`original_vido_id`), read frame by frame from the listed files whatever DATA.DECODING_BACKEND says.
Split files: Charades `train.csv`, `val.csv` (split "test" reads `val.csv`, as PySlowFast does);
Charades-Ego (Ego-Exo's first-person lists) `train_1st.csv`, `test_1st.csv` (splits "val" and "test").

Labels (MODEL.NUM_CLASSES classes, 157): the item label is the multi-hot float vector [NUM_CLASSES]
of the video's labels (PySlowFast's val/test labels; PySlowFast's training labels are those of the
sampled frame span, which this version does not reproduce). `labels`, used by the episode sampler, is
the first class id in the video (in frame order, then as listed), -1 for a video with no label.
Class names: `Charades_v1_classes.txt` in DATA.PATH_TO_DATA_DIR (`c000 Holding some clothes`) when
present, else the class keys c000, c001, ...
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import torch
from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .clip import ClipDataset, ClipSource
from .decoder import FrameFolderReader
from .epickitchens import AnnotationError
from .video_list import read_list_lines

_HEADERS = ("original_vido_id", "original_video_id")


@dataclass
class FrameListVideo:
    """One video of a frame list: frame files in order and each frame's class ids."""

    video_id: str
    frames: List[str] = field(default_factory=list)
    frame_labels: List[List[int]] = field(default_factory=list)

    @property
    def labels(self) -> List[int]:
        """The video's class ids, sorted."""
        return sorted({c for labels in self.frame_labels for c in labels})

    @property
    def first_label(self) -> int:
        """The first class id in frame order, -1 when no frame has one."""
        return next((labels[0] for labels in self.frame_labels if labels), -1)


def _frame_labels(text: str, num_classes: int, where: str) -> List[int]:
    text = text.replace('"', "")
    labels = []
    for item in text.split(",") if text else []:
        try:
            label = int(item)
        except ValueError:
            raise AnnotationError(f"{where}: labels must be comma-separated class ids, got {text!r}") from None
        if not 0 <= label < num_classes:
            raise AnnotationError(f"{where}: class id {label} is not in 0..{num_classes - 1} "
                                  f"(MODEL.NUM_CLASSES is {num_classes})")
        labels.append(label)
    return labels


def read_frame_list(path: str, num_classes: int, prefix: str = "") -> List[FrameListVideo]:
    """The videos of a frame list, in order of first appearance; frame paths joined to `prefix`."""
    lines = read_list_lines(path)
    header = lines[0][1].split()
    if not header or header[0] not in _HEADERS:
        raise AnnotationError(f"{path}, line {lines[0][0]}: expected the header "
                              f"`original_vido_id video_id frame_id path labels`, got {lines[0][1]!r}")
    videos: Dict[str, FrameListVideo] = {}
    for n, line in lines[1:]:
        fields = line.split()
        if len(fields) != 5:
            raise AnnotationError(f'{path}, line {n}: expected 5 space-separated fields `original_vido_id '
                                  f'video_id frame_id path labels` (labels "" when empty), got {len(fields)}')
        video = videos.setdefault(fields[0], FrameListVideo(fields[0]))
        video.frames.append(os.path.join(prefix, fields[3]))
        video.frame_labels.append(_frame_labels(fields[4], num_classes, f"{path}, line {n}"))
    if not videos:
        raise AnnotationError(f"{path} lists no frames")
    return list(videos.values())


def read_class_names(path: str) -> List[str]:
    """Names from a Charades classes file (`c000 Holding some clothes`, one class a line, in id order)."""
    names = []
    for n, line in read_list_lines(path):
        key, _, name = line.partition(" ")
        if key != f"c{len(names):03d}" or not name.strip():
            raise AnnotationError(f"{path}, line {n}: expected `c{len(names):03d} <class name>`, got {line!r}")
        names.append(name.strip())
    return names


class FrameListReader(FrameFolderReader):
    """Frames given as a list of image files (frame i is `paths[i]`)."""

    def __init__(self, paths: List[str]):
        self.path = os.path.dirname(paths[0])
        self.paths = paths

    @property
    def num_frames(self) -> int:
        return len(self.paths)

    def frame_path(self, index: int) -> str:
        return self.paths[index]


@DATASET_REGISTRY.register()
class Charades(ClipDataset):
    """Videos of a Charades frame list with multi-hot labels; one clip per video."""

    SPLIT_FILES = {"test": "val"}
    CLASSES_FILE = "Charades_v1_classes.txt"

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        if not isinstance(cfg.MODEL.NUM_CLASSES, int):
            raise ValueError(f"{type(self).__name__} needs an int MODEL.NUM_CLASSES, got {cfg.MODEL.NUM_CLASSES!r}")
        self.num_classes = cfg.MODEL.NUM_CLASSES
        path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, self.SPLIT_FILES.get(split, split) + ".csv")
        self.videos = read_frame_list(path, self.num_classes, cfg.DATA.PATH_PREFIX)
        self.labels = [v.first_label for v in self.videos]
        classes = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, self.CLASSES_FILE)
        self.class_names = read_class_names(classes) if os.path.isfile(classes) else [
            f"c{i:03d}" for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise AnnotationError(f"{classes} names {len(self.class_names)} classes, but MODEL.NUM_CLASSES is "
                                  f"{self.num_classes}")

    def clip_source(self, clip: int) -> ClipSource:
        """The folder of the video's first frame and its frame count (the frames are read by path)."""
        video = self.videos[clip]
        return ClipSource(os.path.dirname(video.frames[0]), 0, len(video.frames))

    def read_rgb(self, clip: int, indices: np.ndarray) -> np.ndarray:
        """The video's frame files at positions `indices`."""
        return FrameListReader(self.videos[clip].frames).read(indices)

    def clip_label(self, clip: int) -> torch.Tensor:
        """Multi-hot float [NUM_CLASSES] of the video's labels."""
        label = torch.zeros(self.num_classes)
        label[self.videos[clip].labels] = 1.0
        return label

    def clip_meta(self, clip: int) -> Dict:
        video = self.videos[clip]
        return {"video_id": video.video_id, "num_frames": len(video.frames)}


@DATASET_REGISTRY.register()
class CharadesEgo(Charades):
    """Charades-Ego first-person videos (Ego-Exo's `train_1st.csv` / `test_1st.csv`)."""

    SPLIT_FILES = {"train": "train_1st", "val": "test_1st", "test": "test_1st"}
