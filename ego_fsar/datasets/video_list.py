"""Datasets whose clips are whole videos named in a list file, and helpers to parse such files.

`VideoListDataset` is the base of the families that name one video per clip with a class label
(PySlowFast's Kinetics CSV, the few-shot benchmark splits, TAMT's JSON lists). A video named
`videos/fencing/clip.avi` is that file for the video backends ("decord", "pyav") and the folder
`videos/fencing/clip` (the name without its extension) for the "frames" backend. The whole video is
the clip: DATA.TEMPORAL_SAMPLING picks its frames from all of it.
"""
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from fvcore.common.config import CfgNode

from .clip import ClipDataset, ClipSource
from .epickitchens import AnnotationError
from .utils import DecodeError


def read_list_lines(path: str) -> List[Tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a text list file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file {path} does not exist")
    with open(path) as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]
    if not lines:
        raise AnnotationError(f"{path} lists no videos")
    return lines


def parse_label(text: str, where: str) -> int:
    """A non-negative integer class label; AnnotationError naming `where` otherwise."""
    try:
        label = int(text)
    except ValueError:
        raise AnnotationError(f"{where}: the label must be an integer, got {text!r}") from None
    if label < 0:
        raise AnnotationError(f"{where}: the label must be >= 0, got {label}")
    return label


def class_names_from_folders(names: Sequence[str], labels: Sequence[int]) -> List[str]:
    """Names of classes 0..max(labels) from the folder each video is in (`videos/fencing/a.avi` ->
    "fencing") when every class's videos share one folder name and no two classes share it; else
    (e.g. SSv2 ids without folders) each class is named by its id."""
    folders: Dict[int, set] = {}
    for name, label in zip(names, labels):
        folders.setdefault(label, set()).add(os.path.basename(os.path.dirname(name)))
    ids = range(max(labels) + 1)
    unique = [next(iter(f)) for f in folders.values() if len(f) == 1 and "" not in f]
    if len(unique) == len(folders) and len(set(unique)) == len(unique):
        return [next(iter(folders[i])) if i in folders else str(i) for i in ids]
    return [str(i) for i in ids]


class VideoListDataset(ClipDataset):
    """Base class; subclasses set `names` (as in the list file), `videos` (paths to read), `labels`
    and `class_names`. Item meta: {"video": name}."""

    names: List[str]
    videos: List[str]

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        self._sources: Dict[int, ClipSource] = {}

    def video_path(self, clip: int) -> str:
        """The video file, or with a frame-folder backend the folder named like it without extension."""
        path = self.videos[clip]
        return os.path.splitext(path)[0] if self.reader_class.FRAME_FOLDER else path

    def _open(self, clip: int):
        reader = self.reader_class(self.video_path(clip), self.cfg)
        if reader.num_frames < 1:
            raise DecodeError(self.video_path(clip), "the video has no frames")
        return reader

    def clip_source(self, clip: int) -> ClipSource:
        """The whole video (its length and frame rate are not in the list file: the video is opened
        the first time and they are remembered)."""
        if clip not in self._sources:
            reader = self._open(clip)
            self._sources[clip] = ClipSource(self.video_path(clip), 0, reader.num_frames, reader.fps)
        return self._sources[clip]

    def read_rgb(self, clip: int, indices: np.ndarray) -> np.ndarray:
        return self._open(clip).read(indices)

    def clip_label(self, clip: int) -> int:
        return self.labels[clip]

    def clip_meta(self, clip: int) -> Dict:
        return {"video": self.names[clip]}
