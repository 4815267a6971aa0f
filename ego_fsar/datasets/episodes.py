"""Seeded N-way K-shot Q-query episodes over a dataset's clip labels.

Episode i is drawn from its own generator, seeded by (seed, i), and never from global RNG state, so it
is the same in every run, on every rank and in any order of drawing. Its N classes come in a random
order; `support` holds K clip indices per class and `query` Q, grouped by class in that order, and
`support_labels` / `query_labels` are positions 0..N-1 in `class_ids` (dataset-level labels).

Episodes can be frozen to a json file (`FEW_SHOT.EPISODES_FILE`) so that two methods are compared on
identical episodes; reading one checks that it fits the dataset and the way/shot/query asked for.
`EpisodeDataset` turns episodes into decoded support/query batches for episodic training.
"""
import json
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset, default_collate

from ego_fsar.utils import distributed as du
from ego_fsar.utils.atomic_file import atomic_write

from .utils import load_with_retries

logger = logging.getLogger(__name__)
_FORMAT = "ego_fsar episodes v1"


@dataclass(frozen=True)
class Episode:
    """Episode `index`: dataset indices of its support [N*K] and query [N*Q] clips, grouped by class in
    the order of `class_ids`, and their labels 0..N-1."""

    index: int
    class_ids: List[int]
    support: List[int]
    query: List[int]

    @property
    def n_way(self) -> int:
        return len(self.class_ids)

    @property
    def support_labels(self) -> List[int]:
        return np.repeat(np.arange(self.n_way), len(self.support) // self.n_way).tolist()

    @property
    def query_labels(self) -> List[int]:
        return np.repeat(np.arange(self.n_way), len(self.query) // self.n_way).tolist()


class EpisodeSampler:
    """Draws episode i of `way` classes, each with `shot` support and `query` query clips, from
    `labels` (one label per clip). Unlabelled clips (label < 0, e.g. MM-CDFSL's `unlabel` lists) are
    never drawn. Classes with fewer than shot + query clips are left out, with one warning naming them."""

    def __init__(self, labels: Sequence[int], way: int, shot: int, query: int, seed: int = 0):
        if min(way, query) < 1 or shot < 0:
            raise ValueError(f"way and query must be >= 1 and shot >= 0 (0: zero-shot episodes), got {way}, {shot}, "
                             f"{query}")
        self.way, self.shot, self.query, self.seed = way, shot, query, seed
        self.num_clips = len(labels)
        labels = np.asarray(labels)
        classes = np.unique(labels[labels >= 0])
        self._clips: Dict[int, np.ndarray] = {int(c): np.flatnonzero(labels == c) for c in classes}
        too_small = [c for c, clips in self._clips.items() if len(clips) < shot + query]
        if too_small:
            logger.warning("%d of %d classes have fewer than shot + query = %d clips and are left out of "
                           "episodes: %s", len(too_small), len(classes), shot + query,
                           ", ".join(f"{c} ({len(self._clips[c])})" for c in too_small))
        self.classes = np.array([c for c in self._clips if c not in set(too_small)])
        if len(self.classes) < way:
            raise ValueError(f"{way}-way episodes need {way} classes with at least {shot + query} clips each, "
                             f"found {len(self.classes)}")

    def clips_of(self, class_id: int) -> List[int]:
        """Indices of the clips labelled `class_id`."""
        return self._clips[class_id].tolist()

    def episode(self, index: int) -> Episode:
        """Episode `index` (any int >= 0), drawn from a generator seeded by (seed, index)."""
        rng = np.random.default_rng([self.seed, index])
        class_ids = rng.choice(self.classes, self.way, replace=False)
        support, query = [], []
        for c in class_ids:
            clips = rng.choice(self._clips[int(c)], self.shot + self.query, replace=False)
            support.extend(clips[:self.shot].tolist())
            query.extend(clips[self.shot:].tolist())
        return Episode(index, class_ids.tolist(), support, query)

    def episodes(self, num: int, start: int = 0) -> List[Episode]:
        """Episodes start .. start + num - 1."""
        return [self.episode(i) for i in range(start, start + num)]


def save_episodes(path: str, episodes: Sequence[Episode], sampler: EpisodeSampler) -> None:
    """Write `episodes` (drawn by `sampler`) to a json file, atomically."""
    record = {"format": _FORMAT, "num_clips": sampler.num_clips, "way": sampler.way, "shot": sampler.shot,
              "query": sampler.query, "seed": sampler.seed,
              "episodes": [{"index": e.index, "class_ids": e.class_ids, "support": e.support, "query": e.query}
                           for e in episodes]}
    atomic_write(path, lambda f: json.dump(record, f), "w")


def load_episodes(path: str, labels: Sequence[int], way: int, shot: int, query: int) -> List[Episode]:
    """Episodes from a file written by `save_episodes`, checked against the dataset's `labels` (clip
    count, and each clip's label against its episode class) and against way / shot / query."""
    with open(path) as f:
        record = json.load(f)
    if record.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an episodes file (format {record.get('format')!r}, expected {_FORMAT!r})")
    asked = {"num_clips": len(labels), "way": way, "shot": shot, "query": query}
    wrong = {k: (record[k], v) for k, v in asked.items() if record[k] != v}
    if wrong:
        raise ValueError(f"{path} does not fit this run: " + ", ".join(
            f"{k} is {found} in the file but {want} here" for k, (found, want) in wrong.items()))
    episodes = [Episode(e["index"], e["class_ids"], e["support"], e["query"]) for e in record["episodes"]]
    for e in episodes:
        for clips, labels_of in ((e.support, e.support_labels), (e.query, e.query_labels)):
            if any(labels[i] != e.class_ids[k] for i, k in zip(clips, labels_of)):
                raise ValueError(f"{path}: episode {e.index} does not match the dataset's labels")
    return episodes


def episodes_for_cfg(cfg: CfgNode, labels: Sequence[int], num_episodes: Optional[int] = None,
                     episodes_file: Optional[str] = None) -> List[Episode]:
    """`num_episodes` (default FEW_SHOT.TEST_EPISODES) episodes of FEW_SHOT.WAY/SHOT/QUERY/SEED: read
    from `episodes_file` (default FEW_SHOT.EPISODES_FILE; "" for none) when it exists, else drawn (and
    written there by the master process when a file is named)."""
    num_episodes = cfg.FEW_SHOT.TEST_EPISODES if num_episodes is None else num_episodes
    path = cfg.FEW_SHOT.EPISODES_FILE if episodes_file is None else episodes_file
    way, shot, query = cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY
    if path and os.path.isfile(path):
        episodes = load_episodes(path, labels, way, shot, query)
        if len(episodes) != num_episodes:
            raise ValueError(f"{path} holds {len(episodes)} episodes, but {num_episodes} are asked for")
        logger.info("read %d episodes from %s", len(episodes), path)
        return episodes
    sampler = EpisodeSampler(labels, way, shot, query, cfg.FEW_SHOT.SEED)
    episodes = sampler.episodes(num_episodes)
    if path and du.is_master_proc():
        save_episodes(path, episodes, sampler)
        logger.info("wrote %d episodes to %s", len(episodes), path)
    return episodes


def split_for_rank(items: Sequence, rank: int, world: int) -> list:
    """This rank's share of `items`: items[rank::world]."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    return list(items[rank::world])


class EpisodeDataset(Dataset):
    """Episodes `start + (rank + world * j) % num_episodes` (j < len = ⌈num_episodes / world⌉) of
    `sampler`, decoded from `dataset` (one view per clip). Every episode is run by some process; where
    `num_episodes` is not divisible by `world`, the ranks that would have one fewer re-run the epoch's
    first episodes (as DistributedSampler pads), since distributed training needs the same number of
    steps on every rank. Item: {"support": pathway list [N*K,C,T,H,W], "query": [N*Q,C,T,H,W],
    "support_labels", "query_labels", "class_ids" (int64 tensors), "class_names", "index", "skipped"},
    and with several DATA.MODALITIES "support_modalities" / "query_modalities" ({name: pathway list}).
    An unreadable clip is replaced by another clip of the same class that is not in the episode.
    `set_epoch(e)` moves on to the next `num_episodes` episodes, so every epoch sees new ones."""

    def __init__(self, dataset, sampler: EpisodeSampler, num_episodes: int, rank: int = 0, world: int = 1):
        if len(dataset) != sampler.num_clips:
            raise ValueError(f"episodes need one item per clip; the dataset has {len(dataset)} items for "
                             f"{sampler.num_clips} clips")
        self.dataset, self.sampler, self.rank, self.world = dataset, sampler, rank, world
        self.num_episodes = num_episodes
        self.start = 0
        padded = len(self) * world - num_episodes
        if padded and rank == 0:
            logger.warning("%d episodes per epoch (FEW_SHOT.TRAIN_EPISODES or VAL_EPISODES) are not divisible by "
                           "the %d processes: they run %d each, so %d runs repeat the epoch's first episodes",
                           num_episodes, world, len(self), padded)

    def set_epoch(self, epoch: int) -> None:
        self.start = epoch * self.num_episodes

    def __len__(self) -> int:
        return -(-self.num_episodes // self.world)

    def _load(self, clip: int, spare: List[int], episode: Episode) -> Dict:
        def substitute() -> int:
            if not spare:
                raise RuntimeError(f"episode {episode.index}: no readable clip left of class "
                                   f"{self.dataset.labels[clip]}")
            return spare.pop(np.random.randint(len(spare)))

        return load_with_retries(self.dataset.load, clip, self.dataset.failures,
                                 self.dataset.cfg.DATA_LOADER.MAX_RETRIES, substitute)

    def __getitem__(self, j: int) -> Dict:
        episode = self.sampler.episode(self.start + (self.rank + self.world * j) % self.num_episodes)
        used = set(episode.support) | set(episode.query)
        spare = {c: [i for i in self.sampler.clips_of(c) if i not in used] for c in episode.class_ids}
        out = {"index": episode.index, "class_ids": torch.tensor(episode.class_ids),
               "class_names": [self.dataset.class_names[c] for c in episode.class_ids], "skipped": 0}
        for part in ("support", "query"):
            clips, labels = getattr(episode, part), getattr(episode, f"{part}_labels")
            items = [self._load(i, spare[episode.class_ids[k]], episode) for i, k in zip(clips, labels)]
            out[part] = default_collate([it["inputs"] for it in items])
            if "modalities" in items[0]:
                out[f"{part}_modalities"] = default_collate([it["modalities"] for it in items])
            out[f"{part}_labels"] = torch.tensor(labels)
            out["skipped"] += sum(it["meta"]["skipped"] for it in items)
        return out
