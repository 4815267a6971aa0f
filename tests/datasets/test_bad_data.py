"""Unreadable frames: logged with their path, retried with another clip (training) or skipped after
retries of the same clip (evaluation), counted across worker processes, and fatal past
DATA_LOADER.MAX_FAILURES."""
import csv
import json
import logging
import os
import shutil

import pytest
import torch

from ego_fsar.datasets import build_dataset, loader
from ego_fsar.datasets.episodes import EpisodeDataset, EpisodeSampler
from ego_fsar.datasets.utils import SkippedItem, TooManyFailuresError
from ego_fsar.engine import trainer
from tests.egotoy import egotoy_cfg, frame_path
from tests.engine.test_train import tiny_train_cfg

BAD = (2, 5)  # train clips whose first frame is broken below (4 frames at rate 2 of 8 always read it)


@pytest.fixture
def broken(egotoy_root, tmp_path):
    """(cfg, paths) for a copy of EgoToy with one truncated and one missing frame in the train split."""
    root = str(tmp_path / "egotoy")
    shutil.copytree(egotoy_root, root)
    with open(os.path.join(root, "annotations", "EgoToy_train.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [frame_path(root, rows[i]["participant_id"], rows[i]["video_id"], int(rows[i]["start_frame"]))
             for i in BAD]
    with open(paths[0], "r+b") as f:
        f.truncate(100)
    os.remove(paths[1])
    return egotoy_cfg(root), paths


def test_training_retries_with_another_clip(broken, caplog):
    cfg, paths = broken
    ds = build_dataset("egotoy", cfg, "train")
    with caplog.at_level(logging.WARNING):
        for i in BAD:
            item = ds[i]
            assert item["index"] not in BAD and item["meta"]["skipped"] >= 1
            assert item["label"] == ds.labels[item["index"]]
    assert all(p in caplog.text for p in paths)
    assert len(ds.failures) >= 2 and set(paths) <= set(ds.failures.paths)


def test_evaluation_never_swaps_clips(broken):
    cfg, paths = broken
    cfg.DATA.TRAIN_SPLIT, cfg.DATA_LOADER.MAX_RETRIES = "val", 2
    ds = build_dataset("egotoy", cfg, "train")
    assert ds[BAD[1]] == SkippedItem(BAD[1], paths[1])
    assert ds.failures.paths == [paths[1]]


@pytest.mark.parametrize("batch_size,workers", [(4, 2), (1, 0)])
def test_evaluation_loader_drops_and_counts_unreadable_clips(broken, batch_size, workers):
    cfg, _ = broken
    cfg.DATA.TRAIN_SPLIT, cfg.TEST.BATCH_SIZE, cfg.DATA_LOADER.NUM_WORKERS = "val", batch_size, workers
    batches = list(loader.construct_loader(cfg, "train"))
    labels = torch.tensor(build_dataset("egotoy", cfg, "train").labels)
    kept = [b for b in batches if "inputs" in b]
    assert [i for b in kept for i in b["index"].tolist()] == [i for i in range(len(labels)) if i not in BAD]
    assert all(torch.equal(b["label"], labels[b["index"]]) for b in kept)
    assert sum(b["skipped"] for b in batches) == len(BAD)
    if batch_size == 1:  # a batch whose only clip is unreadable holds the count alone
        assert [b for b in batches if "inputs" not in b] == [{"skipped": 1}] * len(BAD)


def test_too_many_failures_stop_the_run(broken):
    cfg, paths = broken
    cfg.DATA_LOADER.MAX_FAILURES = 1
    ds = build_dataset("egotoy", cfg, "train")
    with pytest.raises(TooManyFailuresError) as err:
        for i in range(len(ds)):
            ds[i]
    assert len(ds.failures) == 2 and set(ds.failures.paths) <= set(paths)
    assert str(err.value).endswith(", ".join(ds.failures.paths))


def test_skipped_samples_are_counted_across_workers(broken):
    cfg, _ = broken
    cfg.DATA_LOADER.NUM_WORKERS, cfg.TRAIN.BATCH_SIZE = 2, 4
    train = loader.construct_loader(cfg, "train")
    labels = train.dataset.labels
    skipped = 0
    for epoch in range(2):
        loader.shuffle_dataset(train, epoch)
        for batch in train:
            skipped += int(batch["meta"]["skipped"].sum())
            assert not set(batch["index"].tolist()) & set(BAD)
            assert batch["label"].tolist() == [labels[i] for i in batch["index"].tolist()]
    assert skipped >= 2 * len(BAD)
    assert len(train.dataset.failures) == 0  # the failures happened in the workers' copies


def test_episodes_replace_a_broken_clip_by_one_of_its_class(broken):
    cfg, _ = broken
    ds = build_dataset("egotoy", cfg, "train")
    sampler = EpisodeSampler(ds.labels, 4, 2, 1, seed=0)  # 4 clips a class: one spare
    index = next(i for i in range(100) if BAD[0] in sampler.episode(i).support)
    episode = sampler.episode(index)
    out = EpisodeDataset(ds, sampler, index + 1)[index]
    assert out["index"] == index and out["skipped"] >= 1
    assert out["support"][0].shape[0] == 8 and out["class_ids"].tolist() == episode.class_ids


def test_training_epoch_reports_skipped_samples(broken, tmp_path):
    cfg, paths = broken
    cfg = tiny_train_cfg(cfg, tmp_path / "run")
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.EVAL_PERIOD = 1, 0
    trainer.train(cfg)
    with open(tmp_path / "run" / "json_stats.log") as f:
        records = [json.loads(line) for line in f]
    skipped = [r for r in records if r["_type"] == "data_skipped"]
    assert len(skipped) == 1 and skipped[0]["skipped"] >= len(BAD)
    log = open(tmp_path / "run" / "stdout.log").read()
    assert all(p in log for p in paths)
