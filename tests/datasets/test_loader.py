"""Loaders: per-process batch size, sharding, epoch-seeded order and augmentation, episodes."""
import pytest
import torch

from ego_fsar.datasets import build_dataset, loader
from ego_fsar.utils import distributed as du


def _indices(data_loader):
    return [i for batch in data_loader for i in batch["index"].tolist()]


def test_train_loader_batches_shuffles_and_drops_last(cfg):
    cfg.TRAIN.BATCH_SIZE = 6
    train = loader.construct_loader(cfg, "train")
    assert train.batch_size == 6 and len(train) == 2 and not train.pin_memory
    loader.shuffle_dataset(train, 0)
    batch = next(iter(train))
    assert batch["inputs"][0].shape == (6, 3, 4, 24, 24) and batch["label"].shape == (6,)
    assert batch["meta"]["skipped"].tolist() == [0] * 6
    first = _indices(train)
    assert len(first) == 12 and len(set(first)) == 12 and first != sorted(first)
    loader.shuffle_dataset(train, 1)
    assert _indices(train) != first
    loader.shuffle_dataset(train, 0)
    assert _indices(train) == first


def test_eval_splits_keep_order_and_every_item(cfg):
    cfg.TEST.BATCH_SIZE = 5
    val = loader.construct_loader(cfg, "val")
    assert val.batch_size == 4 and _indices(val) == list(range(8))
    test = loader.construct_loader(cfg, "test")
    assert test.batch_size == 5 and _indices(test) == list(range(24))


def test_per_process_batch_and_shards(cfg, monkeypatch):
    cfg.TRAIN.BATCH_SIZE = 4
    monkeypatch.setattr(du, "get_world_size", lambda: 2)
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(du, "get_rank", lambda rank=rank: rank)
        train = loader.construct_loader(cfg, "train")
        loader.shuffle_dataset(train, 3)
        assert train.batch_size == 2
        shards.append(_indices(train))
    assert len(shards[0]) == len(shards[1]) == 8 and not set(shards[0]) & set(shards[1])
    cfg.TRAIN.BATCH_SIZE = 3
    with pytest.raises(ValueError, match=r"TRAIN.BATCH_SIZE \(3\) must be divisible by the number of processes \(2\)"):
        loader.construct_loader(cfg, "train")


def test_workers_repeat_an_epoch_exactly(cfg):
    cfg.DATA_LOADER.NUM_WORKERS = 1
    cfg.DATA.COLOR_JITTER = 0.3
    batches = []
    for _ in range(2):
        train = loader.construct_loader(cfg, "train")
        loader.shuffle_dataset(train, 2)
        batches.append(next(iter(train)))
    assert batches[0]["index"].tolist() == batches[1]["index"].tolist()
    torch.testing.assert_close(batches[0]["inputs"][0], batches[1]["inputs"][0], rtol=0, atol=0)


def test_episode_loader(cfg, monkeypatch):
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, cfg.FEW_SHOT.TRAIN_EPISODES = 3, 1, 2, 4
    episodes = loader.construct_episode_loader(cfg, "train")
    loader.shuffle_dataset(episodes, 0)
    items = list(episodes)
    assert len(items) == 4 and [e["index"] for e in items] == [0, 1, 2, 3]
    ep = items[0]
    assert ep["support"][0].shape == (3, 3, 4, 24, 24) and ep["query"][0].shape == (6, 3, 4, 24, 24)
    assert ep["support_labels"].tolist() == [0, 1, 2] and ep["query_labels"].tolist() == [0, 0, 1, 1, 2, 2]
    assert len(ep["class_names"]) == 3 and ep["skipped"] == 0
    loader.shuffle_dataset(episodes, 1)
    assert [e["index"] for e in episodes] == [4, 5, 6, 7]
    monkeypatch.setattr(du, "get_world_size", lambda: 2)
    monkeypatch.setattr(du, "get_rank", lambda: 1)
    ranked = loader.construct_episode_loader(cfg, "train", dataset=build_dataset("egotoy", cfg, "train"))
    assert [e["index"] for e in ranked] == [1, 3]


def test_training_episodes_take_their_own_query_count(cfg):
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, cfg.FEW_SHOT.TRAIN_QUERY = 2, 1, 1, 3
    cfg.FEW_SHOT.TRAIN_EPISODES = cfg.FEW_SHOT.VAL_EPISODES = 1
    train = next(iter(loader.construct_episode_loader(cfg, "train")))
    val = next(iter(loader.construct_episode_loader(cfg, "fewshot_val", dataset=build_dataset("egotoy", cfg, "fewshot_val"))))
    assert train["query_labels"].tolist() == [0, 0, 0, 1, 1, 1] and val["query_labels"].tolist() == [0, 1]
