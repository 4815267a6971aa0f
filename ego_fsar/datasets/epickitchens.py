"""EPIC-Kitchens-100 action segments (and any data set written in its layout, such as EgoToy).

Annotations: `<DATA.PATH_TO_DATA_DIR>/EPIC_100_<split>.csv` (or `.pkl`, a pandas DataFrame), with
split "val" read from `EPIC_100_validation`; class names from `EPIC_100_{verb,noun}_classes.csv` and
frame rates from `EPIC_100_video_info.csv` when present. Frames: `<DATA.PATH_PREFIX>/P01/rgb_frames/
P01_01/frame_0000000001.jpg` (backend "frames") or videos `<DATA.PATH_PREFIX>/P01/videos/P01_01.MP4`
(decord / pyav); `start_frame`/`stop_frame` are 1-based and inclusive. Optical flow (DATA.MODALITIES
"flow"): `<DATA.PATH_PREFIX>/P01/flow_frames/P01_01/{u,v}/frame_0000000001.jpg`, extracted with a
temporal stride of 2 for the 2018 videos (`P01_01`: RGB frame n is flow frame (n - 1) // 2 + 1, i.e.
ceil(n / 2)) and of 1 for the 2020 ones (`P01_101`), as EPIC's C1 action recognition code maps them;
an RGB frame past the last flow frame reads the last one (2020 videos have one flow frame less).

Labels: `{"verb": v, "noun": n}` when MODEL.NUM_CLASSES is a list (two heads), else the class chosen
by DATA.EPIC_LABEL, which is also what `labels` (for episode sampling) and `class_names` hold.
"""
import csv
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple, Union

from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .clip import ClipDataset, ClipSource
from .frame_files import FlowJpegFrames
from .utils import AnnotationError

if TYPE_CHECKING:
    from .epic55 import Epic55Segment

EPIC_COLUMNS = (
    "narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp", "stop_timestamp",
    "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class", "all_nouns",
    "all_noun_classes",
)
_REQUIRED = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame", "narration",
             "verb", "verb_class", "noun", "noun_class")


@dataclass(frozen=True)
class EpicSegment:
    """One annotated action segment; frames `start_frame..stop_frame` (1-based, inclusive)."""

    narration_id: str
    participant_id: str
    video_id: str
    start_frame: int
    stop_frame: int
    narration: str
    verb: str
    verb_class: int
    noun: str
    noun_class: int

    @property
    def num_frames(self) -> int:
        return self.stop_frame - self.start_frame + 1


def segment_values(row: Dict, columns: Iterable[str], int_columns: Iterable[str], where: str) -> Dict:
    """{column: stripped value} of an annotation row, `int_columns` as ints; errors name `where`."""
    values = {}
    for name in columns:
        value = row.get(name)
        if value is None or str(value).strip() == "":
            raise AnnotationError(f"{where}: missing value for column {name!r}")
        values[name] = str(value).strip()
    for name in int_columns:
        try:
            values[name] = int(values[name])
        except ValueError:
            raise AnnotationError(f"{where}: column {name!r} must be an integer, got {values[name]!r}") from None
    return values


def check_segment(segment: Union["EpicSegment", "Epic55Segment"], where: str,
                  labelled: bool = True) -> Union["EpicSegment", "Epic55Segment"]:
    """`segment` (start_frame, stop_frame, verb_class, noun_class) if its frame range and class ids
    are valid, else an AnnotationError naming `where`."""
    if segment.start_frame < 1 or segment.stop_frame < segment.start_frame:
        raise AnnotationError(f"{where}: expected 1 <= start_frame <= stop_frame, got "
                              f"{segment.start_frame}..{segment.stop_frame}")
    if labelled and min(segment.verb_class, segment.noun_class) < 0:
        raise AnnotationError(f"{where}: negative class id (verb {segment.verb_class}, noun {segment.noun_class})")
    return segment


def verb_noun_label(segment: Union["EpicSegment", "Epic55Segment"], two_heads: bool,
                    label: int) -> Union[int, Dict[str, int]]:
    """An EPIC clip's training label: {"verb", "noun"} for two heads (MODEL.NUM_CLASSES a list), else
    `label` (the class DATA.EPIC_LABEL picks)."""
    return {"verb": segment.verb_class, "noun": segment.noun_class} if two_heads else label


def _segment(row: Dict, where: str) -> EpicSegment:
    values = segment_values(row, _REQUIRED, ("start_frame", "stop_frame", "verb_class", "noun_class"), where)
    return check_segment(EpicSegment(**values), where)


def _check_columns(path: str, found: Optional[Iterable[str]], wanted: Iterable[str]) -> None:
    found = set(found if found is not None else ())
    missing = [c for c in wanted if c not in found]
    if missing:
        raise AnnotationError(f"{path}: missing columns {missing} (found {sorted(found)})")


def _csv_rows(path: str, required: Iterable[str]) -> Tuple[List[str], List[Tuple[str, Dict]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        _check_columns(path, columns, required)
        rows = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise AnnotationError(f"{path}, line {reader.line_num}: expected {len(columns)} fields")
            rows.append((f"{path}, line {reader.line_num}", row))
    return columns, rows


def _pkl_rows(path: str, required: Iterable[str], index_name: str) -> Tuple[List[str], List[Tuple[str, Dict]]]:
    import pandas

    frame = pandas.read_pickle(path)
    if not isinstance(frame, pandas.DataFrame):
        raise AnnotationError(f"{path}: expected a pandas DataFrame, got {type(frame).__name__}")
    if frame.index.name == index_name:
        frame = frame.reset_index()
    _check_columns(path, frame.columns, required)
    return list(frame.columns), [(f"{path}, row {i} ({index_name} {r.get(index_name)})", r)
                                 for i, r in enumerate(frame.to_dict("records"))]


def read_annotation_table(path: str, required: Iterable[str], index_name: str) -> Tuple[List[str], List[Tuple[str, Dict]]]:
    """(columns, [(where, row)]) of an EPIC annotation file: .csv, or a pandas .pkl as published
    (whose index, when named `index_name`, becomes a column). The `required` columns must be there;
    `where` names the file and the line (csv) or row (pkl)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file {path} does not exist")
    if path.endswith(".pkl"):
        return _pkl_rows(path, required, index_name)
    return _csv_rows(path, required)


def read_epic_annotations(path: str) -> List[EpicSegment]:
    """Segments of an EPIC-100 annotation file (.csv, or .pkl as published), in file order."""
    _, rows = read_annotation_table(path, _REQUIRED, "narration_id")
    return [_segment(row, where) for where, row in rows]


def read_class_names(path: str, id_column: str = "id", name_column: str = "key") -> List[str]:
    """Class names by id from a class file: EPIC-100's `EPIC_100_{verb,noun}_classes.csv` (columns
    id, key), or EPIC-55's `EPIC_{verb,noun}_classes.csv` (verb_id / noun_id, class_key)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        _check_columns(path, reader.fieldnames, (id_column, name_column))
        names = {}
        for row in reader:
            try:
                names[int(row[id_column])] = row[name_column]
            except (TypeError, ValueError):
                raise AnnotationError(f"{path}, line {reader.line_num}: bad class id {row[id_column]!r}") from None
    if sorted(names) != list(range(len(names))):
        raise AnnotationError(f"{path}: class ids must be 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


def read_video_fps(path: str, video_column: str = "video_id") -> Dict[str, float]:
    """Frame rate of each video from a video info file: EPIC-100's `EPIC_100_video_info.csv`
    (columns video_id, fps, ...) or EPIC-55's `EPIC_video_info.csv` (video, fps, ...)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        _check_columns(path, reader.fieldnames, (video_column, "fps"))
        return {row[video_column]: float(row["fps"]) for row in reader}


@DATASET_REGISTRY.register()
class EpicKitchens(ClipDataset):
    """EPIC-Kitchens-100 segments of `split` ("train", "val" = validation, or any file stem suffix)."""

    ANNOTATION_PREFIX = "EPIC_100"
    SPLIT_FILES = {"val": "validation"}
    FRAMES_DIR = "rgb_frames"
    FLOW_DIR = "flow_frames"
    VIDEOS_DIR = "videos"
    VIDEO_EXT = ".MP4"

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        if cfg.DATA.EPIC_LABEL not in ("verb", "noun"):
            raise ValueError(f"DATA.EPIC_LABEL must be 'verb' or 'noun', got {cfg.DATA.EPIC_LABEL!r}")
        self.annotation_dir, self.frames_root = self.data_paths(cfg)
        path = self._annotation_file(split)
        self.segments = read_epic_annotations(path)
        if not self.segments:
            raise ValueError(f"{path} has no segments")
        self._key = cfg.DATA.EPIC_LABEL
        self._two_heads = isinstance(cfg.MODEL.NUM_CLASSES, (list, tuple))
        self.labels = [getattr(s, f"{self._key}_class") for s in self.segments]
        self.class_names = self._class_names()
        info = self._file("video_info.csv")
        self._fps = read_video_fps(info) if os.path.isfile(info) else {}

    @classmethod
    def data_paths(cls, cfg: CfgNode) -> Tuple[str, str]:
        """(annotation folder, root of the participant folders)."""
        return cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX

    def _file(self, suffix: str) -> str:
        return os.path.join(self.annotation_dir, f"{self.ANNOTATION_PREFIX}_{suffix}")

    def _annotation_file(self, split: str) -> str:
        stem = self._file(self.SPLIT_FILES.get(split, split))
        for path in (stem + ".csv", stem + ".pkl"):
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(f"no annotations for split {split!r}: neither {stem}.csv nor {stem}.pkl exists "
                                f"(DATA.PATH_TO_DATA_DIR is {self.annotation_dir!r})")

    def _class_names(self) -> List[str]:
        path = self._file(f"{self._key}_classes.csv")
        if os.path.isfile(path):
            names = read_class_names(path)
            if max(self.labels) >= len(names):
                raise AnnotationError(f"{path} has {len(names)} classes, but the annotations use "
                                      f"{self._key}_class {max(self.labels)}")
            return names
        seen = {getattr(s, f"{self._key}_class"): getattr(s, self._key) for s in self.segments}
        return [seen.get(i, str(i)) for i in range(max(self.labels) + 1)]

    def clip_source(self, clip: int) -> ClipSource:
        s = self.segments[clip]
        if self.reader_class.FRAME_FOLDER:
            path = os.path.join(self.frames_root, s.participant_id, self.FRAMES_DIR, s.video_id)
        else:
            path = os.path.join(self.frames_root, s.participant_id, self.VIDEOS_DIR, s.video_id + self.VIDEO_EXT)
        return ClipSource(path, s.start_frame - 1, s.num_frames, self._fps.get(s.video_id))

    def flow_stride(self, video_id: str) -> int:
        """RGB frames per flow frame of video `video_id`: 2 for the 2018 videos (two-digit number,
        `P01_01`), 1 for the 2020 ones (`P01_101`)."""
        return 2 if len(video_id.rsplit("_", 1)[-1]) == 2 else 1

    def flow_frames(self, clip: int) -> FlowJpegFrames:
        s = self.segments[clip]
        return FlowJpegFrames(os.path.join(self.frames_root, s.participant_id, self.FLOW_DIR, s.video_id),
                              self.cfg.DATA.FRAME_TEMPLATE, self.flow_stride(s.video_id), repeat_last=True,
                              bound=self.cfg.DATA.FLOW_BOUND)

    def clip_label(self, clip: int) -> Union[int, Dict[str, int]]:
        return verb_noun_label(self.segments[clip], self._two_heads, self.labels[clip])

    def clip_meta(self, clip: int) -> Dict:
        s = self.segments[clip]
        return {"narration_id": s.narration_id, "video_id": s.video_id, "start_frame": s.start_frame,
                "stop_frame": s.stop_frame, "narration": s.narration}
