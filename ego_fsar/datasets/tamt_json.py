"""TAMT's (and CloserLookFewShot's) JSON split files: Diving48, RareAct, SSv2, HMDB51, UCF101 ...

`<DATA.PATH_TO_DATA_DIR>/<file>.json` is `{"image_names": [...], "image_labels": [...]}` with an
optional `"label_names"` list. Despite the key name, TAMT's `image_names` are video files (mp4, avi,
webm, read whole with decord); here they are read with DATA.DECODING_BACKEND, joined to
DATA.PATH_PREFIX when relative (TAMT writes absolute paths, which are used as they are). Labels are
the file's class ids, global across the splits (e.g. Diving48's novel classes are 7, 15, 23, ...).
Split "train" reads `base.json`, "test" `novel.json`, any other split `<split>.json` (TAMT: val).
Class names: `label_names[label]` when given, else the videos' folder names when they identify the
classes, else the labels as strings.
"""
import os
from typing import Dict, List, Optional, Tuple

from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .utils import AnnotationError, read_json
from .video_list import VideoListDataset, class_names_from_folders


def _string_list(record: Dict, key: str, path: str) -> List[str]:
    values = record.get(key)
    if not isinstance(values, list):
        raise AnnotationError(f"{path}: {key!r} must be a list, got {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise AnnotationError(f"{path}: {key}[{i}] must be a non-empty string, got {value!r}")
    return values


def read_tamt_json(path: str) -> Tuple[List[str], List[int], Optional[List[str]]]:
    """(video names, labels, label names or None) of a TAMT split file."""
    record = read_json(path)
    if not isinstance(record, dict):
        raise AnnotationError(f"{path}: expected an object with 'image_names' and 'image_labels'")
    names = _string_list(record, "image_names", path)
    labels = record.get("image_labels")
    if not isinstance(labels, list) or len(labels) != len(names):
        raise AnnotationError(f"{path}: 'image_labels' must be a list as long as 'image_names' ({len(names)})")
    for i, label in enumerate(labels):
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            raise AnnotationError(f"{path}: image_labels[{i}] must be an integer >= 0, got {label!r}")
    if not names:
        raise AnnotationError(f"{path} lists no videos")
    label_names = _string_list(record, "label_names", path) if "label_names" in record else None
    if label_names is not None and max(labels) >= len(label_names):
        raise AnnotationError(f"{path}: label {max(labels)} has no entry in 'label_names' ({len(label_names)})")
    return names, labels, label_names


@DATASET_REGISTRY.register()
class TamtJson(VideoListDataset):
    """Videos and labels of a TAMT split file; one clip per video."""

    SPLIT_FILES = {"train": "base", "test": "novel"}

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, self.SPLIT_FILES.get(split, split) + ".json")
        self.names, self.labels, label_names = read_tamt_json(path)
        self.videos = [os.path.join(cfg.DATA.PATH_PREFIX, name) for name in self.names]
        self.class_names = label_names or class_names_from_folders(self.names, self.labels)
