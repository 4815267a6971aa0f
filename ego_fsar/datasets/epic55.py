"""EPIC-Kitchens-55 action segments: TBN's train/val split, the official files and the test sets.

Annotations in DATA.PATH_TO_DATA_DIR, for split `s`: `EPIC_<s>_action_labels.{pkl,csv}` (TBN's
`train` and `val` pickles, Ego-Exo's `train_val`, the official `train`) or, unlabelled,
`EPIC_<s>_timestamps.{pkl,csv}` (`test_s1`, `test_s2`). Columns: uid, participant_id, video_id,
start_frame, stop_frame and, when labelled, narration, verb, verb_class, noun, noun_class (the
pandas pickles keep `uid` as their index). `start_frame`/`stop_frame` are 1-based and inclusive.

Frames: `<DATA.PATH_PREFIX>/P01_01/frame_0000000001.jpg`, one folder per video (Ego-Exo's
layout; the released `rgb/train/P01/P01_01` folders can be linked into one folder), or videos
`<DATA.PATH_PREFIX>/P01_01.MP4` with the video backends. Frame rates from `EPIC_video_info.csv`
(columns video, fps) when it is in DATA.PATH_TO_DATA_DIR, else unknown (dense sampling then counts
SAMPLING_RATE in video frames).

Labels, as for EPIC-100: `{"verb": v, "noun": n}` when MODEL.NUM_CLASSES is a list (two heads,
EPIC-55 [125, 352]), else the DATA.EPIC_LABEL class, which `labels` and `class_names` also follow. Segments
of the unlabelled test sets have class -1 (TBN's convention). Class names from
`EPIC_{verb,noun}_classes.csv` (columns {verb,noun}_id, class_key) when present, else the annotations.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Union

from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .clip import ClipDataset, ClipSource
from .epickitchens import (AnnotationError, check_segment, read_annotation_table, read_class_names, read_video_fps,
                           segment_values, verb_noun_label)

_SEGMENT_COLUMNS = ("uid", "participant_id", "video_id", "start_frame", "stop_frame")
_LABEL_COLUMNS = ("narration", "verb", "verb_class", "noun", "noun_class")
_SPLIT_SUFFIXES = ("action_labels", "timestamps")


@dataclass(frozen=True)
class Epic55Segment:
    """One segment; frames start_frame..stop_frame (1-based, inclusive); classes -1 when unlabelled."""

    uid: str
    participant_id: str
    video_id: str
    start_frame: int
    stop_frame: int
    narration: str = ""
    verb: str = ""
    verb_class: int = -1
    noun: str = ""
    noun_class: int = -1

    @property
    def num_frames(self) -> int:
        return self.stop_frame - self.start_frame + 1


def _segment(row: Dict, labelled: bool, where: str) -> Epic55Segment:
    columns = _SEGMENT_COLUMNS + (_LABEL_COLUMNS if labelled else ())
    ints = ("start_frame", "stop_frame") + (("verb_class", "noun_class") if labelled else ())
    return check_segment(Epic55Segment(**segment_values(row, columns, ints, where)), where, labelled)


def read_epic55_annotations(path: str) -> List[Epic55Segment]:
    """Segments of an EPIC-55 annotation file (.pkl or .csv); labelled when it has the label columns."""
    columns, rows = read_annotation_table(path, _SEGMENT_COLUMNS, "uid")
    has_labels = [c for c in _LABEL_COLUMNS if c in columns]
    if has_labels and len(has_labels) != len(_LABEL_COLUMNS):
        raise AnnotationError(f"{path}: labelled files need all of {list(_LABEL_COLUMNS)}, found only {has_labels}")
    segments = [_segment(row, bool(has_labels), where) for where, row in rows]
    if not segments:
        raise AnnotationError(f"{path} has no segments")
    return segments


@DATASET_REGISTRY.register()
class Epic55(ClipDataset):
    """EPIC-Kitchens-55 segments of `split` (TBN: "train", "val"; "test_s1", "test_s2" unlabelled)."""

    VIDEO_EXT = ".MP4"

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        if cfg.DATA.EPIC_LABEL not in ("verb", "noun"):
            raise ValueError(f"DATA.EPIC_LABEL must be 'verb' or 'noun', got {cfg.DATA.EPIC_LABEL!r}")
        self.annotation_dir, self.frames_root = cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX
        self.segments = read_epic55_annotations(self._annotation_file(split))
        self._key = cfg.DATA.EPIC_LABEL
        self._two_heads = isinstance(cfg.MODEL.NUM_CLASSES, (list, tuple))
        self.labels = [getattr(s, f"{self._key}_class") for s in self.segments]
        self.class_names = self._class_names()
        info = os.path.join(self.annotation_dir, "EPIC_video_info.csv")
        self._fps = read_video_fps(info, "video") if os.path.isfile(info) else {}

    def _annotation_file(self, split: str) -> str:
        tried = []
        for suffix in _SPLIT_SUFFIXES:
            for ext in (".pkl", ".csv"):
                path = os.path.join(self.annotation_dir, f"EPIC_{split}_{suffix}{ext}")
                if os.path.isfile(path):
                    return path
                tried.append(os.path.basename(path))
        raise FileNotFoundError(f"no annotations for split {split!r} in DATA.PATH_TO_DATA_DIR "
                                f"{self.annotation_dir!r}: tried {', '.join(tried)}")

    def _class_names(self) -> List[str]:
        path = os.path.join(self.annotation_dir, f"EPIC_{self._key}_classes.csv")
        top = max(self.labels)
        if os.path.isfile(path):
            names = read_class_names(path, f"{self._key}_id", "class_key")
            if top >= len(names):
                raise AnnotationError(f"{path} has {len(names)} classes, but the annotations use "
                                      f"{self._key}_class {top}")
            return names
        seen = {getattr(s, f"{self._key}_class"): getattr(s, self._key) for s in self.segments}
        return [seen.get(i, str(i)) for i in range(top + 1)]

    def clip_source(self, clip: int) -> ClipSource:
        s = self.segments[clip]
        path = os.path.join(self.frames_root, s.video_id)
        if not self.reader_class.FRAME_FOLDER:
            path += self.VIDEO_EXT
        return ClipSource(path, s.start_frame - 1, s.num_frames, self._fps.get(s.video_id))

    def clip_label(self, clip: int) -> Union[int, Dict[str, int]]:
        return verb_noun_label(self.segments[clip], self._two_heads, self.labels[clip])

    def clip_meta(self, clip: int) -> Dict:
        s = self.segments[clip]
        return {"uid": s.uid, "video_id": s.video_id, "start_frame": s.start_frame, "stop_frame": s.stop_frame,
                "narration": s.narration}
