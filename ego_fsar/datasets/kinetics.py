"""PySlowFast's Kinetics list files (any data set written in that format).

`<DATA.PATH_TO_DATA_DIR>/<split>.csv` (PySlowFast: train.csv, val.csv, test.csv) holds one
`path<DATA.PATH_LABEL_SEPARATOR>label` per line, no header; `path` is relative to DATA.PATH_PREFIX
(or absolute) and the label is the text after the last separator, so paths may contain it. Class
names are the videos' folder names when they identify the classes (`train/abseiling/x.mp4`), else
the labels as strings.
"""
import os
from typing import List, Tuple

from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .epickitchens import AnnotationError
from .video_list import VideoListDataset, class_names_from_folders, parse_label, read_list_lines


def read_path_label_list(path: str, separator: str) -> Tuple[List[str], List[int]]:
    """(video paths, labels) of a `path<separator>label` list file."""
    names, labels = [], []
    for n, line in read_list_lines(path):
        fields = line.rsplit(separator, 1)
        if len(fields) != 2 or not fields[0].strip():
            raise AnnotationError(f"{path}, line {n}: expected `path{separator}label` "
                                  f"(DATA.PATH_LABEL_SEPARATOR is {separator!r}), got {line!r}")
        names.append(fields[0].strip())
        labels.append(parse_label(fields[1].strip(), f"{path}, line {n}"))
    return names, labels


@DATASET_REGISTRY.register()
class Kinetics(VideoListDataset):
    """Videos and labels of `<split>.csv`; one clip per video."""

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, f"{split}.csv")
        self.names, self.labels = read_path_label_list(path, cfg.DATA.PATH_LABEL_SEPARATOR)
        self.videos = [os.path.join(cfg.DATA.PATH_PREFIX, name) for name in self.names]
        self.class_names = class_names_from_folders(self.names, self.labels)
