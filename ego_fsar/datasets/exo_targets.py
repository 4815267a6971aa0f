"""`EgoExoTargets`: clips of EGOEXO.DATASET with Ego-Exo's auxiliary targets (training split only).

A training item is the wrapped dataset's item plus

    teacher_ego     [2] teacher ego scores, zeros when the clip has no teacher entry  } with
    teacher_object  [EGOEXO.NUM_OBJECT_CLASSES] teacher object scores, zeros likewise } EGOEXO.KD
    has_teacher     bool: the clip has an entry in EGOEXO.TEACHER_FILE                }
    hoi_boxes       [EGOEXO.MAX_BOXES, 6] hand/object boxes (kind, x1, y1, x2, y2 in [0, 1] of the
                    frame, score: the file's sixth column, else 1), padded with kind -1; the boxes
                    refer to the whole frame (the training crop is not applied to them)
    has_boxes       bool: the clip has an entry in EGOEXO.BOXES_FILE

Entries are keyed by clip: the clip's `narration_id` (EPIC layout), else its `video_id`. The clips
without a teacher entry are listed when the dataset is built (a warning with their count and a few
keys); the clips of each epoch that had none are counted by the model (`count_kd_missing_teacher`)
and reported per epoch by the trainer. Other splits are the wrapped dataset's items unchanged.
"""
import pickle
from typing import Any, Dict, List, Union

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from ego_fsar.models.methods.egoexo import BOX_COLUMNS
from ego_fsar.utils.logging import get_logger

from .build import DATASET_REGISTRY, build_dataset
from .clip import ClipDataset
from .utils import SkippedItem

logger = get_logger(__name__)


def clip_key(dataset: ClipDataset, clip: int) -> str:
    """The key of clip `clip` in teacher and box files: `narration_id`, else `video_id`."""
    meta = dataset.clip_meta(clip)
    key = meta.get("narration_id", meta.get("video_id"))
    if key is None:
        raise KeyError(f"{type(dataset).__name__}.clip_meta gives neither narration_id nor video_id")
    return str(key)


def _read_pickle(path: str, what: str) -> Dict[str, Any]:
    with open(path, "rb") as f:
        table = pickle.load(f)
    if not isinstance(table, dict):
        raise ValueError(f"EGOEXO.{what} {path}: expected a dict keyed by clip, got {type(table).__name__}")
    return {str(k): v for k, v in table.items()}


def _first(names: List[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


@DATASET_REGISTRY.register()
class EgoExoTargets(Dataset):
    """See the module doc."""

    def __init__(self, cfg: CfgNode, split: str):
        self.data = build_dataset(cfg.EGOEXO.DATASET, cfg, split)
        self.labels, self.class_names, self.failures = self.data.labels, self.data.class_names, self.data.failures
        self.training = split == cfg.DATA.TRAIN_SPLIT
        if not self.training:
            return
        self.num_objects, self.max_boxes = cfg.EGOEXO.NUM_OBJECT_CLASSES, cfg.EGOEXO.MAX_BOXES
        self.kd = bool(cfg.EGOEXO.KD)
        self.teachers = _read_pickle(cfg.EGOEXO.TEACHER_FILE, "TEACHER_FILE") if cfg.EGOEXO.TEACHER_FILE else {}
        self.boxes = _read_pickle(cfg.EGOEXO.BOXES_FILE, "BOXES_FILE") if cfg.EGOEXO.BOXES_FILE else {}
        keys = [clip_key(self.data, c) for c in range(self.data.num_clips)]
        self.missing_teacher = [k for k in keys if k not in self.teachers] if self.kd else []
        if self.missing_teacher:
            logger.warning("%d of %d %s clips have no entry in EGOEXO.TEACHER_FILE %r: they get no distillation "
                           "loss (%s); each epoch's count is in its train_epoch stats (kd_missing_teacher)",
                           len(self.missing_teacher), len(keys), split, cfg.EGOEXO.TEACHER_FILE,
                           _first(self.missing_teacher))

    def __len__(self) -> int:
        return len(self.data)

    def _teacher(self, key: str) -> Dict[str, torch.Tensor]:
        entry = self.teachers.get(key)
        ego, obj = torch.zeros(2), torch.zeros(self.num_objects)
        if entry is not None:
            ego, obj = torch.as_tensor(entry["ego"], dtype=torch.float32), torch.as_tensor(entry["object"],
                                                                                            dtype=torch.float32)
            if ego.shape != (2,) or obj.shape != (self.num_objects,):
                raise ValueError(f"EGOEXO.TEACHER_FILE entry {key!r}: expected 'ego' [2] and 'object' "
                                 f"[{self.num_objects}] scores, got {list(ego.shape)} and {list(obj.shape)}")
        return {"teacher_ego": ego, "teacher_object": obj, "has_teacher": torch.tensor(entry is not None)}

    def _boxes(self, key: str) -> Dict[str, torch.Tensor]:
        boxes = torch.full((self.max_boxes, BOX_COLUMNS), -1.0)
        entry = self.boxes.get(key)
        if entry is not None and len(entry):
            given = torch.as_tensor(entry, dtype=torch.float32)
            if given.dim() != 2 or given.size(1) not in (BOX_COLUMNS - 1, BOX_COLUMNS):
                raise ValueError(f"EGOEXO.BOXES_FILE entry {key!r}: expected rows [kind, x1, y1, x2, y2] or "
                                 f"[kind, x1, y1, x2, y2, score], got shape {list(given.shape)}")
            given = given[: self.max_boxes]
            boxes[: len(given), : given.size(1)] = given
            if given.size(1) < BOX_COLUMNS:
                boxes[: len(given), BOX_COLUMNS - 1] = 1.0
        return {"hoi_boxes": boxes, "has_boxes": torch.tensor(entry is not None)}

    def __getitem__(self, index: int) -> Union[Dict, SkippedItem]:
        item = self.data[index]
        if not self.training:
            return item
        key = clip_key(self.data, item["index"])
        if self.kd:
            item.update(self._teacher(key))
        item.update(self._boxes(key))
        return item
