"""The standard few-shot action recognition class splits (CLIP-FSAR / EMP-Net / HyRSM format).

`<DATA.PATH_TO_DATA_DIR>/<split>_few_shot.txt` (split "train", "val" or "test"; the files of
SSv2-Small, SSv2-Full, Kinetics-100, UCF101 and HMDB51 ship in `data/splits/<dataset>/`) holds one
video per line:

    test0/88644                       SSv2: <split><class>/<video id>
    test0//videos/fencing/clip.avi    others: <split><class>//<path relative to DATA.PATH_PREFIX>

Class indices are local to the split (0..N-1 for its N classes) and are the `labels`. Video ids get
DATA.VIDEO_EXT (`<PATH_PREFIX>/88644.webm`); with the "frames" backend every video is a folder
named like it without extension (`<PATH_PREFIX>/88644/`). Class names are the videos' folder names
(`fencing`) where the paths have them, else the class indices as strings (SSv2).
"""
import os
import re
from typing import List, Tuple

from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .epickitchens import AnnotationError
from .video_list import VideoListDataset, class_names_from_folders, parse_label, read_list_lines

_LINE = re.compile(r"^(?P<split>[A-Za-z]+)(?P<label>\d+)/(?P<name>.+)$")


def read_few_shot_split(path: str, split: str) -> Tuple[List[str], List[int]]:
    """(names, labels) of a `<split>_few_shot.txt` file: names are video ids (SSv2) or relative paths."""
    names, labels = [], []
    for n, line in read_list_lines(path):
        match = _LINE.match(line)
        if match is None or match["name"].strip("/") == "":
            raise AnnotationError(f"{path}, line {n}: expected `{split}<class>/<video id>` or "
                                  f"`{split}<class>//<relative path>`, got {line!r}")
        if match["split"] != split:
            raise AnnotationError(f"{path}, line {n}: the line belongs to split {match['split']!r}, "
                                  f"not {split!r}: {line!r}")
        names.append(match["name"].lstrip("/"))
        labels.append(parse_label(match["label"], f"{path}, line {n}"))
    return names, labels


@DATASET_REGISTRY.register()
class FewShotSplit(VideoListDataset):
    """Videos of `<split>_few_shot.txt` with their split-local class labels; one clip per video."""

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, f"{split}_few_shot.txt")
        self.names, self.labels = read_few_shot_split(path, split)
        self.videos = [os.path.join(cfg.DATA.PATH_PREFIX, name if os.path.splitext(name)[1] else
                                    name + cfg.DATA.VIDEO_EXT) for name in self.names]
        self.class_names = class_names_from_folders(self.names, self.labels)
