"""MM-CDFSL's cross-domain few-shot split files (Ego4D source; EPIC-55, MECCANO, WEAR targets).

Split `<dataset>_<part>` reads `<DATA.PATH_TO_DATA_DIR>/<folder>/<dataset>_<part>.json`, with
PATH_TO_DATA_DIR the repository's `cdfsl/` folder, e.g. "meccano_val" ->
`target/meccano/annotations/meccano_val.json`. A file is `{version, date, description, split,
[num_actions], clips: [...]}`; `val` files are the labelled episodic test pools, `unlabel` files
the unlabelled target clips, `train` (Ego4D) the source training set.

A clip is defined by its start frame only (MM-CDFSL ignores `end_frame`/`stop_frame`): it is the
DATA.NUM_FRAMES frames `sampling_rate` apart from the start (MM-CDFSL's source_sampling_rate /
target_sampling_rate), at every view; frames past the end of the video repeat its last frame.
Frames are read from `<DATA.PATH_PREFIX>/<frames>/<frame file>` (PATH_PREFIX is the `Data/` root of
MM-CDFSL's DATA_STRUCTURE.md; `frames`, the frame file names and the rates of each dataset are in
CDFSL_FORMATS), whatever DATA.DECODING_BACKEND and DATA.FRAME_TEMPLATE say. Optical flow and hand
pose (DATA.MODALITIES "flow", "pose") are per-frame `.npy` arrays with the RGB frame numbers, flow
[H,W,2] and heatmaps [H,W,21], in the folders MM-CDFSL's datasets read (`flow`, `pose` of
CDFSL_FORMATS; Ego4D: `optical_flow/<clip_uid>/npy/000001.npy`, `hand-pose/heatmap/<clip_uid>/
000001.npy`, as its code reads them; its DATA_STRUCTURE.md draws `hand_pose/heatmap/<clip_uid>/npy`);
missing ones past the end repeat the last one, as for RGB.

Labels (`labels` and the item `label`): a single label key is the class id (MECCANO
`action_id_internal`, WEAR `label_id_internal`, EPIC `action_idx`); Ego4D's class is the
(verb_label, noun_label) pair numbered in order of first appearance in the file (MM-CDFSL's
`action_label_internal`, so ids are per file). Clips of `unlabel` files have label -1 and the
dataset has no class names. Class names join the table's name fields (Ego4D "verb noun"), else the
class id. Ego4D clips of the videos MM-CDFSL excludes as invalid are left out.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .clip import ClipDataset, ClipSource
from .decoder import FrameFolderReader
from .utils import AnnotationError, read_json
from .frame_files import NpyFrames, repeat_last_frame
from .pose import HeatmapFrames


@dataclass(frozen=True)
class CdfslFormat:
    """How one MM-CDFSL dataset's split files and frames are laid out: the annotation `folder`, each
    clip's RGB, flow and pose folders (`frames`, `flow`, `pose`, formatted with the record's fields),
    the RGB frame file names (flow and pose: the same names ending in .npy), the sampling rate, the
    record field holding the start frame, the label and class-name fields, and videos to leave out."""

    folder: str
    frames: str
    flow: str
    pose: str
    frame_template: str
    sampling_rate: int
    start_key: str
    label_keys: Tuple[str, ...]
    name_keys: Tuple[str, ...] = ()
    excluded_videos: Tuple[str, ...] = ()

    def frame_keys(self) -> List[str]:
        """Record fields that the folder patterns use."""
        patterns = self.frames + self.flow + self.pose
        return list(dict.fromkeys(part.split("}")[0] for part in patterns.split("{")[1:]))

    @property
    def npy_template(self) -> str:
        """File names of the flow and pose arrays."""
        return os.path.splitext(self.frame_template)[0] + ".npy"


CDFSL_FORMATS = {
    "ego4d": CdfslFormat(
        folder="source/ego4d/annotations", frames="ego4d_data/v1/image_frame/{clip_uid}",
        flow="ego4d_data/v1/optical_flow/{clip_uid}/npy", pose="ego4d_data/v1/hand-pose/heatmap/{clip_uid}",
        frame_template="{:06d}.jpg", sampling_rate=4, start_key="clip_frame",
        label_keys=("verb_label", "noun_label"), name_keys=("verb", "noun"),
        # The Ego4D videos MM-CDFSL's configs `delete` as invalid.
        excluded_videos=("d18ef16d-f803-4387-bb5e-7876f1522a63", "77ed1624-f87b-4196-9a0a-95b7023b18e4",
                         "128f69dd-f61d-494f-84c2-f3a8c937ae8f", "09910d48-41f9-4a84-bb1b-1bc96de62286",
                         "8e914832-2dd1-44fd-81f8-1b7e2ccd2402")),
    "epic-55": CdfslFormat(
        folder="target/epic/annotations", frames="EPIC-KITCHENS-55/frames/rgb/train/{participant_id}/{video_id}",
        flow="EPIC-KITCHENS-55/frames/flow/train/{participant_id}/{video_id}",
        pose="EPIC-KITCHENS-55/frames/pose/train/{participant_id}/{video_id}",
        frame_template="frame_{:010d}.jpg", sampling_rate=8, start_key="start_frame", label_keys=("action_idx",)),
    "meccano": CdfslFormat(
        folder="target/meccano/annotations", frames="MECCANO/RGB_frames/{video_id}",
        flow="MECCANO/flow_frames/{video_id}", pose="MECCANO/hand-pose/heatmap/{video_id}", frame_template="{:05d}.jpg",
        sampling_rate=1, start_key="start_frame", label_keys=("action_id_internal",), name_keys=("action_name",)),
    "wear": CdfslFormat(
        folder="target/wear/annotations", frames="WEAR/RGB_frames/{video_id}",
        flow="WEAR/flow_frames/{video_id}", pose="WEAR/hand-pose/heatmap/{video_id}", frame_template="{:06d}.jpg",
        sampling_rate=8, start_key="start_frame", label_keys=("label_id_internal",), name_keys=("label",)),
}


@dataclass(frozen=True)
class CdfslClip:
    """One clip: its RGB frame folder (relative to DATA.PATH_PREFIX), 1-based start frame, class (-1:
    none), video, and its flow and pose folders."""

    frames: str
    start_frame: int
    label: int
    video_id: str
    flow: str
    pose: str


def _int_field(record: Dict, key: str, where: str) -> int:
    value = record.get(key)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: field {key!r} must be an integer, got {value!r}") from None


def _str_field(record: Dict, key: str, where: str) -> str:
    value = record.get(key)
    if value is None or str(value).strip() == "":
        raise AnnotationError(f"{where}: missing field {key!r}")
    return str(value)


def read_cdfsl_split(path: str, fmt: CdfslFormat) -> Tuple[List[CdfslClip], List[str]]:
    """(clips, class names) of an MM-CDFSL split file; unlabelled files (no label fields) give labels
    -1 and no class names."""
    record = read_json(path)
    records = record.get("clips") if isinstance(record, dict) else None
    if not isinstance(records, list) or not records:
        raise AnnotationError(f"{path}: expected an object with a non-empty 'clips' list")
    labelled = all(k in records[0] for k in fmt.label_keys)
    classes: Dict[Tuple[int, ...], int] = {}
    names: Dict[int, str] = {}
    clips = []
    for i, r in enumerate(records):
        where = f"{path}, clips[{i}]"
        if not isinstance(r, dict):
            raise AnnotationError(f"{where}: expected an object, got {type(r).__name__}")
        if all(k in r for k in fmt.label_keys) != labelled:
            raise AnnotationError(f"{where}: {'missing' if labelled else 'unexpected'} label fields "
                                  f"{list(fmt.label_keys)} (clips[0] {'has' if labelled else 'has none of'} them)")
        video_id = _str_field(r, "video_id", where)
        if video_id in fmt.excluded_videos:
            continue
        if labelled:
            key = tuple(_int_field(r, k, where) for k in fmt.label_keys)
            label = key[0] if len(key) == 1 else classes.setdefault(key, len(classes))
            name = " ".join(_str_field(r, k, where) for k in fmt.name_keys) or str(label)
            if names.setdefault(label, name) != name:
                raise AnnotationError(f"{where}: class {label} is named {name!r} here but {names[label]!r} before")
        start = _int_field(r, fmt.start_key, where)
        fields = {k: _str_field(r, k, where) for k in fmt.frame_keys()}
        clips.append(CdfslClip(fmt.frames.format(**fields), start, label if labelled else -1, video_id,
                               fmt.flow.format(**fields), fmt.pose.format(**fields)))
    class_names = [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []
    return clips, class_names


def cdfsl_format(split: str) -> Tuple[str, CdfslFormat]:
    """(dataset, format) of a split named `<dataset>_<part>`."""
    dataset = split.rsplit("_", 1)[0]
    if "_" not in split or dataset not in CDFSL_FORMATS:
        raise KeyError(f"MM-CDFSL split {split!r} must be `<dataset>_<part>` with dataset one of "
                       f"{sorted(CDFSL_FORMATS)} (e.g. 'meccano_val', 'wear_unlabel', 'ego4d_train')")
    return dataset, CDFSL_FORMATS[dataset]


@DATASET_REGISTRY.register()
class MMCDFSL(ClipDataset):
    """Clips of one MM-CDFSL split file (see the module docstring for names, frames and labels)."""

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        self.dataset, self.format = cdfsl_format(split)
        path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, self.format.folder, f"{split}.json")
        self.clips, self.class_names = read_cdfsl_split(path, self.format)
        self.labels = [c.label for c in self.clips]
        self._frame_cfg = cfg.clone()
        self._frame_cfg.DATA.FRAME_TEMPLATE = self.format.frame_template
        self._video_lengths: Dict[str, int] = {}

    @property
    def clip_length(self) -> int:
        """Frames from the first to the last one read."""
        return (self.cfg.DATA.NUM_FRAMES - 1) * self.format.sampling_rate + 1

    def clip_source(self, clip: int) -> ClipSource:
        c = self.clips[clip]
        return ClipSource(os.path.join(self.cfg.DATA.PATH_PREFIX, c.frames), max(c.start_frame, 1) - 1,
                          self.clip_length)

    def _video_length(self, reader: FrameFolderReader) -> int:
        if reader.path not in self._video_lengths:
            self._video_lengths[reader.path] = reader.num_frames
        return self._video_lengths[reader.path]

    def frame_indices(self, clip: int, temporal: int) -> np.ndarray:
        """0-based positions of frames max(1, start_frame + rate * i), i < DATA.NUM_FRAMES (1-based, as
        MM-CDFSL), the same at every temporal view."""
        numbers = self.clips[clip].start_frame + self.format.sampling_rate * np.arange(self.cfg.DATA.NUM_FRAMES)
        return np.maximum(numbers, 1) - 1

    def read_rgb(self, clip: int, indices: np.ndarray) -> np.ndarray:
        """Frames `indices`, those past the end of the video replaced by its last frame (the folder is
        listed only when the last one is missing)."""
        reader = FrameFolderReader(self.clip_source(clip).path, self._frame_cfg)
        return reader.read(repeat_last_frame(indices, reader.frame_path, lambda: self._video_length(reader)))

    def _npy_frames(self, folder: str, channels: int) -> NpyFrames:
        return NpyFrames(os.path.join(self.cfg.DATA.PATH_PREFIX, folder), self.format.npy_template,
                         repeat_last=True, channels=channels)

    def flow_frames(self, clip: int) -> NpyFrames:
        return self._npy_frames(self.clips[clip].flow, 2)

    def pose_frames(self, clip: int) -> HeatmapFrames:
        return HeatmapFrames(self._npy_frames(self.clips[clip].pose, 0))

    def clip_label(self, clip: int) -> int:
        return self.labels[clip]

    def clip_meta(self, clip: int) -> Dict:
        c = self.clips[clip]
        return {"video_id": c.video_id, "start_frame": c.start_frame}
