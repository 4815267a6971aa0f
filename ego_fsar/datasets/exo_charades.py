"""Charades third-person videos as SUM-L's exo dataset (`SUML.EXO_DATASET CharadesExo`).

The videos are Charades' frame lists (charades_ego.py: `train.csv`, `val.csv`, 157 action classes),
read from SUML.EXO_PATH_TO_DATA_DIR / SUML.EXO_PATH_PREFIX. Exo tags come from Charades'
`Charades_v1_mapping.txt` in that folder (`c000 n000 v000`: each action's object and verb): a video's
verbs and nouns are those of its actions (33 verbs, then 38 nouns: SUML.EXO_NUM_CLASSES [33, 38]). Charades
has no per-clip narration: a video's narration is its action names joined by ". " in id order
(`Charades_v1_classes.txt`), "" for a video without actions.
"""
import os
from typing import List, Tuple

from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .charades_ego import Charades
from .epickitchens import AnnotationError
from .video_list import read_list_lines

MAPPING_FILE = "Charades_v1_mapping.txt"


def read_action_mapping(path: str) -> List[Tuple[int, int]]:
    """(noun id, verb id) of each action, in action-id order, from `c000 n000 v000` lines."""
    pairs = []
    for n, line in read_list_lines(path):
        fields = line.split()
        if (len(fields) != 3 or fields[0] != f"c{len(pairs):03d}" or fields[1][:1] != "n" or fields[2][:1] != "v"
                or not fields[1][1:].isdigit() or not fields[2][1:].isdigit()):
            raise AnnotationError(f"{path}, line {n}: expected `c{len(pairs):03d} n<id> v<id>`, got {line!r}")
        pairs.append((int(fields[1][1:]), int(fields[2][1:])))
    return pairs


@DATASET_REGISTRY.register()
class CharadesExo(Charades):
    """See the module doc; implements the exo interface of `SUMLPairs`."""

    NUM_CLASSES = 157  # MODEL.NUM_CLASSES of the exo reader (SUMLPairs sets it)

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        self.mapping = read_action_mapping(os.path.join(cfg.DATA.PATH_TO_DATA_DIR, MAPPING_FILE))
        if len(self.mapping) != self.num_classes:
            raise AnnotationError(f"{MAPPING_FILE} maps {len(self.mapping)} actions, expected {self.num_classes}")

    def exo_tags(self, clip: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        actions = self.videos[clip].labels
        return (tuple(sorted({self.mapping[a][1] for a in actions})),
                tuple(sorted({self.mapping[a][0] for a in actions})))

    def narration(self, clip: int) -> str:
        return ". ".join(self.class_names[a] for a in self.videos[clip].labels)

    @property
    def tag_counts(self) -> Tuple[int, int]:
        return 1 + max(v for _, v in self.mapping), 1 + max(n for n, _ in self.mapping)

    def annotation_records(self) -> List[Tuple[str, List[int]]]:
        return [(v.video_id, v.labels) for v in self.videos]
