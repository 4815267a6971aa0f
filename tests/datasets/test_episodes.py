"""Seeded episodes: determinism, structure, exclusion warning (real EPIC verbs), files, rank split."""
import json
import logging
import os

import numpy as np
import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.datasets.episodes import (EpisodeDataset, EpisodeSampler, episodes_for_cfg, load_episodes,
                                        save_episodes, split_for_rank)
from ego_fsar.datasets.utils import FailureTracker
from ego_fsar.datasets.epickitchens import read_epic_annotations
from tests.paths import EPIC_ROWS, requires_shared, shared_path

LABELS = [c for c in range(8) for _ in range(6)]  # 8 classes x 6 clips


def test_episode_i_is_fixed_by_seed_and_index():
    a = EpisodeSampler(LABELS, 3, 2, 2, seed=5)
    b = EpisodeSampler(LABELS, 3, 2, 2, seed=5)
    np.random.seed(123)  # global RNG state plays no part
    assert [b.episode(i) for i in (7, 2, 4)] == [a.episode(7), a.episode(2), a.episode(4)]
    assert a.episodes(3, start=2) == [a.episode(2), a.episode(3), a.episode(4)]
    assert a.episode(0) != a.episode(1)
    assert EpisodeSampler(LABELS, 3, 2, 2, seed=6).episode(0) != a.episode(0)


def test_episode_structure():
    sampler = EpisodeSampler(LABELS, 5, 2, 3, seed=0)
    for ep in sampler.episodes(20):
        assert ep.n_way == 5 and len(set(ep.class_ids)) == 5
        assert len(ep.support) == 10 and len(ep.query) == 15
        assert len(set(ep.support) | set(ep.query)) == 25
        assert ep.support_labels == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        assert ep.query_labels == sorted(ep.query_labels) and ep.query_labels[::3] == [0, 1, 2, 3, 4]
        assert [LABELS[i] for i in ep.support] == [ep.class_ids[k] for k in ep.support_labels]
        assert [LABELS[i] for i in ep.query] == [ep.class_ids[k] for k in ep.query_labels]
    # every class shows up, in varying order
    eps = sampler.episodes(50)
    assert {c for ep in eps for c in ep.class_ids} == set(range(8))
    assert len({tuple(ep.class_ids) for ep in eps}) == 50


EPIC_VAL = "epic-kitchens-100-annotations/EPIC_100_validation.csv"


@pytest.mark.parametrize("csv", [os.path.join(EPIC_ROWS, "EPIC_100_validation.csv"),
                                 pytest.param(shared_path(EPIC_VAL), marks=requires_shared(EPIC_VAL))],
                         ids=["300-rows", "shared"])
def test_small_classes_left_out_with_one_warning_on_real_epic_verbs(caplog, csv):
    labels = [s.verb_class for s in read_epic_annotations(csv)]
    counts = np.bincount(labels)
    small = [c for c in np.unique(labels) if counts[c] < 10]
    with caplog.at_level(logging.WARNING, logger="ego_fsar.datasets.episodes"):
        sampler = EpisodeSampler(labels, 5, 5, 5, seed=0)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert all(f"{c} ({counts[c]})" in message for c in small) and f"{len(small)} of " in message
    assert set(sampler.classes) == {c for c in np.unique(labels) if counts[c] >= 10}
    assert not {labels[i] for ep in sampler.episodes(30) for i in ep.support} & set(small)


def test_too_few_classes():
    with pytest.raises(ValueError, match="5-way episodes need 5 classes with at least 7 clips"):
        EpisodeSampler(LABELS, 5, 2, 5)


def test_file_round_trip_and_checks(tmp_path):
    sampler = EpisodeSampler(LABELS, 3, 1, 2, seed=0)
    episodes = sampler.episodes(6)
    path = str(tmp_path / "eps.json")
    save_episodes(path, episodes, sampler)
    assert load_episodes(path, LABELS, 3, 1, 2) == episodes
    with pytest.raises(ValueError, match="shot is 1 in the file but 2 here"):
        load_episodes(path, LABELS, 3, 2, 2)
    with pytest.raises(ValueError, match="num_clips is 48 in the file but 47 here"):
        load_episodes(path, LABELS[:-1], 3, 1, 2)
    with pytest.raises(ValueError, match="does not match the dataset's labels"):
        load_episodes(path, LABELS[6:] + LABELS[:6], 3, 1, 2)
    json.dump({"format": "other"}, open(tmp_path / "bad.json", "w"))
    with pytest.raises(ValueError, match="is not an episodes file"):
        load_episodes(str(tmp_path / "bad.json"), LABELS, 3, 1, 2)


def test_episodes_for_cfg_writes_then_reads(tmp_path):
    cfg = get_cfg()
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, cfg.FEW_SHOT.TEST_EPISODES = 4, 1, 1, 12
    cfg.FEW_SHOT.EPISODES_FILE = str(tmp_path / "frozen" / "episodes.json")
    drawn = episodes_for_cfg(cfg, LABELS)
    assert os.path.isfile(cfg.FEW_SHOT.EPISODES_FILE) and len(drawn) == 12
    cfg.FEW_SHOT.SEED = 99  # ignored: the file decides
    assert episodes_for_cfg(cfg, LABELS) == drawn
    cfg.FEW_SHOT.TEST_EPISODES = 10
    with pytest.raises(ValueError, match="holds 12 episodes, but 10 are asked for"):
        episodes_for_cfg(cfg, LABELS)
    fresh = EpisodeSampler(LABELS, 4, 1, 1, seed=99).episodes(10)
    assert episodes_for_cfg(cfg, LABELS, episodes_file="") == fresh
    cfg.FEW_SHOT.EPISODES_FILE = ""
    assert episodes_for_cfg(cfg, LABELS) == fresh


def test_split_for_rank_partitions_in_order():
    items = list(range(10))
    parts = [split_for_rank(items, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(parts, [])) == items
    with pytest.raises(ValueError, match="rank 3 is not in 0..2"):
        split_for_rank(items, 3, 3)


def test_unlabelled_clips_are_never_drawn():
    labels = [-1] * 10 + [0] * 3 + [1] * 3
    sampler = EpisodeSampler(labels, 2, 1, 2, seed=0)
    assert sorted(sampler.classes.tolist()) == [0, 1]
    for episode in sampler.episodes(20):
        assert all(labels[i] >= 0 for i in (*episode.support, *episode.query))


class _Clips(torch.utils.data.Dataset):
    """Stand-in dataset of LABELS whose clip i loads as the tensor [i]."""

    def __init__(self):
        self.labels, self.class_names = LABELS, [f"class {c}" for c in range(8)]
        self.failures, self.cfg = FailureTracker(0), get_cfg()

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int):
        return {"inputs": [torch.tensor([float(index)])], "meta": {}}


@pytest.mark.parametrize("num, world", [(7, 2), (10, 4), (2, 3), (6, 3)])
def test_every_episode_runs_and_every_rank_runs_as_many(num, world, caplog):
    """Episodic training on `world` simulated ranks: no episode of an epoch is dropped, and every rank
    has the same number of steps (DDP); the padding ranks repeat the epoch's first episodes."""
    sampler = EpisodeSampler(LABELS, 2, 1, 1, seed=0)
    for epoch in (0, 1):
        runs = []
        for rank in range(world):
            with caplog.at_level(logging.WARNING):
                episodes = EpisodeDataset(_Clips(), sampler, num, rank, world)
            episodes.set_epoch(epoch)
            runs.append([episodes[j]["index"] for j in range(len(episodes))])
        steps = -(-num // world)
        assert [len(r) for r in runs] == [steps] * world
        first = epoch * num
        expected = list(range(first, first + num)) + [first + i % num for i in range(steps * world - num)]
        assert sorted(sum(runs, [])) == sorted(expected)
    warned = [r.getMessage() for r in caplog.records if "not divisible" in r.getMessage()]
    assert len(warned) == (2 if num % world else 0)  # rank 0 of each epoch's datasets
    assert all("FEW_SHOT.TRAIN_EPISODES" in m and f"{world} processes" in m for m in warned)
