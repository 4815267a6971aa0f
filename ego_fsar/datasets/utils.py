"""Dataset helpers: named registries, `pack_pathway_output`, and retrying on unreadable samples.

Bad data policy: a sample whose video or frame cannot be read (missing, truncated, zero-byte, wrong
path) raises DecodeError inside `load`; `load_with_retries` logs a WARNING naming the path and tries
again up to `DATA_LOADER.MAX_RETRIES` times. Training passes a substitute: each failed sample is
recorded in the dataset's FailureTracker and replaced by another one; the returned item is the one
that was loaded (its own `index` and label) and `meta["skipped"]` counts the samples it replaced.
Evaluation must not swap clips (that would change the label): the same sample is retried, and one
that never reads is recorded once and returned as a `SkippedItem` marker, which `collate_skipping`
drops from its batch. Every batch of `collate_skipping` carries `skipped`, the unreadable samples it
covers (replaced or dropped), so summing it over an epoch's batches gives the epoch's failures in
every worker process. Once a process has seen more than `DATA_LOADER.MAX_FAILURES` failed samples
(since the last `reset`), it raises with their paths.
"""
import json
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset, default_collate

logger = logging.getLogger(__name__)

# Random source of the samplers and transforms: a RandomState, or the np.random module itself (the default).
Rng = Union[np.random.RandomState, ModuleType]


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and the line (or row)."""


def read_json(path: str) -> Any:
    """The parsed content of json file `path`; a missing or malformed file raises naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split file {path} does not exist")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{path}: not valid JSON ({e})") from None


class NamedRegistry:
    """name -> class or function, filled with the `register(name)` decorator (fvcore's Registry keys
    by `__name__`; config values such as "frames" or "dense" need their own names)."""

    def __init__(self, what: str):
        self.what = what
        self._objects: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable:
        def deco(obj: Callable) -> Callable:
            if name in self._objects:
                raise KeyError(f"{self.what} {name!r} is already registered")
            self._objects[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Callable:
        if name not in self._objects:
            raise KeyError(f"{self.what} must be one of {sorted(self._objects)}, got {name!r}")
        return self._objects[name]

    def names(self) -> List[str]:
        return sorted(self._objects)


class DecodeError(RuntimeError):
    """A video or frame could not be read; `path` names the file (or folder) at fault."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path


class TooManyFailuresError(RuntimeError):
    """More samples failed than DATA_LOADER.MAX_FAILURES allows; the message lists their paths."""


class FailureTracker:
    """Paths of the samples that failed in this process since the last `reset()`."""

    def __init__(self, max_failures: int):
        self.max_failures = max_failures
        self.paths: List[str] = []

    def __len__(self) -> int:
        return len(self.paths)

    def record(self, path: str) -> None:
        self.paths.append(path)
        if len(self.paths) > self.max_failures:
            raise TooManyFailuresError(
                f"{len(self.paths)} samples failed to load (DATA_LOADER.MAX_FAILURES is {self.max_failures}): "
                + ", ".join(self.paths))

    def reset(self) -> None:
        self.paths = []


@dataclass(frozen=True)
class SkippedItem:
    """Marker for dataset item `index` whose sample `path` could not be read (evaluation splits)."""

    index: int
    path: str


def load_with_retries(load: Callable[[int], Dict], index: int, failures: FailureTracker, max_retries: int,
                      substitute: Optional[Callable[[], int]] = None) -> Union[Dict, SkippedItem]:
    """`load(index)`, retried after a DecodeError up to `max_retries` times.

    With `substitute` (training), `substitute()` gives the next index, every failure is recorded in
    `failures`, `meta["skipped"]` counts them, and DecodeError is raised when no attempt was readable.
    Without it (evaluation), the same index is retried; `meta["skipped"]` is 0, and a sample that never
    reads is recorded once and returned as a `SkippedItem`."""
    failed: List[DecodeError] = []
    for attempt in range(max_retries + 1):
        if attempt and substitute is not None:
            index = substitute()
        try:
            item = load(index)
        except DecodeError as e:
            failed.append(e)
            if substitute is None:
                logger.debug("unreadable sample %d (attempt %d of %d): %s", index, len(failed), max_retries + 1, e)
            else:
                logger.warning("replacing unreadable sample %d: %s", index, e)
                failures.record(e.path)
            continue
        item["meta"]["skipped"] = len(failed) if substitute is not None else 0
        return item
    if substitute is None:
        logger.warning("skipping sample %d, unreadable after %d attempts: %s", index, max_retries + 1, failed[-1])
        failures.record(failed[-1].path)
        return SkippedItem(index, failed[-1].path)
    raise DecodeError(failed[-1].path, f"no readable sample after {max_retries + 1} attempts; failed: "
                                       + ", ".join(dict.fromkeys(e.path for e in failed)))


class RetryingDataset(Dataset, ABC):
    """A dataset whose `__getitem__` is `load(index)` retried on bad data (`load_with_retries`):
    training (`self.training`) substitutes a random other item, evaluation returns a SkippedItem.
    Subclasses set `cfg`, `training` and `failures` (a FailureTracker) and implement `load`."""

    cfg: CfgNode
    training: bool
    failures: FailureTracker

    @abstractmethod
    def load(self, index: int) -> Dict:
        """Item `index` without retries (raises DecodeError on unreadable data)."""

    def _random_index(self) -> int:
        return int(np.random.randint(len(self)))

    def __getitem__(self, index: int) -> Union[Dict, SkippedItem]:
        """Item `index`, retried on bad data (training: another random item; else a SkippedItem)."""
        substitute = self._random_index if self.training else None
        return load_with_retries(self.load, index, self.failures, self.cfg.DATA_LOADER.MAX_RETRIES, substitute)


def collate_skipping(items: Sequence[Union[Dict, SkippedItem]]) -> Dict:
    """`default_collate` of the readable items, plus `skipped` (int): the unreadable samples the batch
    covers, i.e. the SkippedItem markers dropped from it plus the `meta["skipped"]` of the items kept.
    A batch whose items were all skipped is `{"skipped": n}` alone (no "inputs")."""
    kept = [it for it in items if not isinstance(it, SkippedItem)]
    replaced = sum(int(it["meta"]["skipped"]) for it in kept)
    batch = default_collate(kept) if kept else {}
    batch["skipped"] = len(items) - len(kept) + replaced
    return batch


def pack_pathway_output(cfg: CfgNode, frames: torch.Tensor) -> List[torch.Tensor]:
    """Split a clip [C,T,H,W] into the model's pathways: [frames] for single-pathway archs, [slow, fast]
    for SlowFast (slow = T // SLOWFAST.ALPHA evenly spaced frames), as PySlowFast does."""
    if cfg.MODEL.ARCH in cfg.MODEL.SINGLE_PATHWAY_ARCH:
        return [frames]
    if cfg.MODEL.ARCH in cfg.MODEL.MULTI_PATHWAY_ARCH:
        num_slow = frames.shape[1] // cfg.SLOWFAST.ALPHA
        if num_slow < 1:
            raise ValueError(f"DATA.NUM_FRAMES ({frames.shape[1]}) must be at least SLOWFAST.ALPHA "
                             f"({cfg.SLOWFAST.ALPHA}) for MODEL.ARCH {cfg.MODEL.ARCH!r}")
        slow = torch.index_select(frames, 1, torch.linspace(0, frames.shape[1] - 1, num_slow).long())
        return [slow, frames]
    raise ValueError(f"MODEL.ARCH {cfg.MODEL.ARCH!r} is in neither MODEL.SINGLE_PATHWAY_ARCH "
                     f"{cfg.MODEL.SINGLE_PATHWAY_ARCH} nor MODEL.MULTI_PATHWAY_ARCH {cfg.MODEL.MULTI_PATHWAY_ARCH}")
