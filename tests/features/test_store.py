"""The on-disk feature store on the tiny EgoToy: equal to the in-memory feature cache bit for bit,
resumable after a crash without rewriting finished shards, refused when it holds another model's
features, and read by the episodic test (same accuracies, no backbone built, failed clips dropped)."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from ego_fsar.datasets import build_dataset
from ego_fsar.engine import head_selection
from ego_fsar.engine.episode_runner import build_feature_cache
from ego_fsar.engine.fewshot_test import EPISODES_JSON
from ego_fsar.engine.tester import test as run_test
from ego_fsar.features import extract
from ego_fsar.features.identity import StoreMismatchError, dataset_source, run_identity
from ego_fsar.features.job import extract_job
from ego_fsar.features.store import FeatureStore
from ego_fsar.models import build_model
from ego_fsar.models.build import BACKBONE_REGISTRY
from ego_fsar.utils.env import seed_everything
from tests.egotoy import egotoy_cfg
from tests.engine.test_fewshot import classifier_cfg, fewshot_cfg, vit_fewshot_cfg
from tests.engine.test_unreadable_clips import break_clip
from tests.tensorboard_events import read_scalars


def _store_cfg(cfg, tmp_path, make=fewshot_cfg, head="ProtoNet"):
    cfg = make(cfg, tmp_path / "out", head)
    cfg.FEATURES.SHARD_SIZE = 8  # 3 shards of the 24 test clips, 2 batches of 4 each
    return cfg


def _extract(cfg, store_dir):
    """Store of TEST.SPLIT from a seeded model; returns (backbone, dataset)."""
    seed_everything(0)
    backbone = build_model(cfg).backbone
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    extract.extract_store(backbone, dataset, cfg, str(store_dir), run_identity(cfg, dataset_source(cfg, len(dataset))))
    return backbone, dataset


def _fields(output):
    return [output.pooled, output.frames] + list(output.hidden or [])


@pytest.mark.parametrize("make, masked", [(fewshot_cfg, 0), (vit_fewshot_cfg, 2)])
def test_store_equals_the_in_memory_cache_bit_for_bit(cfg, tmp_path, make, masked):
    """ResNet (pooled, frames) and a ViT with three hidden levels under 2 masked views."""
    cfg = _store_cfg(cfg, tmp_path, make)
    cfg.TEST.NUM_MASKED_VIEWS, cfg.MASK.RATIO = masked, 0.5
    backbone, dataset = _extract(cfg, tmp_path / "store")
    items = list(range(len(dataset)))
    cache, cache_rows = build_feature_cache(backbone, dataset, items, cfg)
    store = FeatureStore(str(tmp_path / "store"))
    assert sorted(store.rows) == items and store.failed == [] and len(store.views) == max(1, masked)
    rows = torch.as_tensor([store.rows[i] for i in items])
    for cached, stored in zip(cache, store.views):
        expected, got = _fields(cached.index(torch.as_tensor([cache_rows[i] for i in items]))), _fields(stored.index(rows))
        assert len(got) == (2 if make is fewshot_cfg else 5)
        assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert store.in_dim == backbone.out_dim


def _snapshot(store_dir):
    """{relative path: bytes} of every file of a store."""
    files = {}
    for folder, _, names in os.walk(store_dir):
        for name in names:
            path = os.path.join(folder, name)
            files[os.path.relpath(path, store_dir)] = open(path, "rb").read()
    return files


def test_a_killed_extraction_resumes_to_the_same_store(cfg, tmp_path, monkeypatch):
    cfg = _store_cfg(cfg, tmp_path)
    _extract(cfg, tmp_path / "whole")
    write_shard, written = extract.fs.write_shard, []

    def crash_after_first(store_dir, shard, *args):
        if written:
            raise KeyboardInterrupt("killed")
        write_shard(store_dir, shard, *args)
        written.append(shard)

    monkeypatch.setattr(extract.fs, "write_shard", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        _extract(cfg, tmp_path / "resumed")
    assert sorted(os.listdir(tmp_path / "resumed")) == ["shard_00000", "store.json"]
    first = os.stat(tmp_path / "resumed" / "shard_00000" / "pooled.npy")
    monkeypatch.setattr(extract.fs, "write_shard", write_shard)
    seed_everything(0)
    backbone = build_model(cfg).backbone
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    redone = extract.extract_store(backbone, dataset, cfg, str(tmp_path / "resumed"),
                                   run_identity(cfg, dataset_source(cfg, len(dataset))))
    assert redone == [1, 2]  # the finished shard is skipped
    again = os.stat(tmp_path / "resumed" / "shard_00000" / "pooled.npy")
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert _snapshot(tmp_path / "resumed") == _snapshot(tmp_path / "whole")


def test_a_store_of_other_features_is_refused_naming_the_field(cfg, tmp_path):
    cfg = _store_cfg(cfg, tmp_path)
    _extract(cfg, tmp_path / "store")
    store = FeatureStore(str(tmp_path / "store"))
    other = cfg.clone()
    other.DATA.TEST_CROP_SIZE = 24
    with pytest.raises(StoreMismatchError, match=r"config: store \w+ vs run \w+ \(DATA.TEST_CROP_SIZE 32 vs 24\)"):
        store.check(run_identity(other, dataset_source(other, 24)))
    path = str(tmp_path / "weights.pyth")
    torch.save({"model_state": build_model(cfg).state_dict()}, path)
    other = cfg.clone()
    other.TEST.CHECKPOINT_FILE_PATH = path
    with pytest.raises(StoreMismatchError, match=r"checkpoint: store 'random-init' vs run '[0-9a-f]{64}'"):
        store.check(run_identity(other, dataset_source(other, 24)))
    with pytest.raises(StoreMismatchError, match=r"source split: store 'test' vs run 'val'"):
        store.check(run_identity(cfg, dict(dataset_source(cfg, 24), split="val")))
    with pytest.raises(StoreMismatchError, match=r"backbone: store 'ResNet' vs run 'VideoViT'"):  # resuming too
        _extract(vit_fewshot_cfg(cfg.clone(), tmp_path / "vit", "ProtoNet"), tmp_path / "store")


def _checkpointed(cfg, tmp_path, head):
    """The config tests `head` of a seeded FewShot model saved as its test checkpoint."""
    cfg = _store_cfg(cfg, tmp_path, head=head)
    cfg.HEAD.TRX_DIM, cfg.HEAD.METRIC = 16, "cosine"  # ProtoNet: a (prediction-neutral) learnable scale
    seed_everything(1)
    path = str(tmp_path / "model.pyth")
    torch.save({"model_state": build_model(cfg).state_dict()}, path)
    cfg.TEST.CHECKPOINT_FILE_PATH = path
    return cfg


def _forbid_backbones(monkeypatch):
    def refuse(name):
        raise AssertionError(f"built backbone {name} though the features are stored")

    monkeypatch.setattr(BACKBONE_REGISTRY, "get", refuse)


def _episode_accs(out_dir):
    return [e["acc"] for e in json.load(open(os.path.join(out_dir, EPISODES_JSON)))["episodes"]]


@pytest.mark.parametrize("head", ["ProtoNet", "TRX"])
def test_episodic_test_from_the_store_equals_the_cache_without_a_backbone(cfg, tmp_path, monkeypatch, head):
    """TRX's (trained, here: checkpointed) weights come from the test checkpoint."""
    cfg = _checkpointed(cfg, tmp_path, head)
    cached = run_test(cfg)
    extract_job(cfg, out=str(tmp_path / "store"))
    stored_cfg = cfg.clone()
    stored_cfg.FEW_SHOT.FEATURE_STORE, stored_cfg.OUTPUT_DIR = str(tmp_path / "store"), str(tmp_path / "stored")
    _forbid_backbones(monkeypatch)
    stored = run_test(stored_cfg)
    assert {k: stored[k] for k in cached} == cached and stored["peak_rss_mb"] > 0
    assert _episode_accs(stored_cfg.OUTPUT_DIR) == _episode_accs(cfg.OUTPUT_DIR)
    saved = torch.load(cfg.TEST.CHECKPOINT_FILE_PATH, weights_only=False)["model_state"]
    head_state = head_selection.stored_features_head(stored_cfg, FeatureStore(str(tmp_path / "store")).in_dim).state_dict()
    assert head_state and all(torch.equal(v, saved[f"head.{k}"]) for k, v in head_state.items())


def test_untrained_head_on_stored_features_is_refused(cfg, tmp_path, monkeypatch):
    cfg = classifier_cfg(cfg, tmp_path / "out", "TRX")
    cfg.FEATURES.SHARD_SIZE = 8
    extract_job(cfg, out=str(tmp_path / "store"))
    cfg.FEW_SHOT.FEATURE_STORE = str(tmp_path / "store")
    _forbid_backbones(monkeypatch)
    with pytest.raises(ValueError, match=r"HEAD.NAME TRX: .*trainable parameters that no checkpoint trained "
                                         r"\(MODEL.MODEL_NAME ResNet has no few-shot head"):
        run_test(cfg)


def test_a_corrupt_clip_is_listed_as_failed_and_its_episodes_dropped(egotoy_root, tmp_path, monkeypatch):
    root = str(tmp_path / "egotoy")
    shutil.copytree(egotoy_root, root)
    first_frame = break_clip(root, "test", 5)
    cfg = _store_cfg(egotoy_cfg(root), tmp_path)
    cfg.DATA_LOADER.MAX_RETRIES = 0
    cached = run_test(cfg)
    assert cached["skipped_clips"] == 1 and cached["dropped_episodes"] > 0
    cfg.TENSORBOARD.ENABLE = True
    extract_job(cfg, out=str(tmp_path / "store"))
    store = FeatureStore(str(tmp_path / "store"))
    [record] = [r for r in map(json.loads, open(tmp_path / "out" / "json_stats.log")) if r["_type"] == "feature_extraction"]
    assert {k: record[k] for k in ("items", "readable", "failed", "shards_written")} == {
        "items": 24, "readable": 23, "failed": 1, "shards_written": 3} and record["seconds"] > 0
    scalars = read_scalars(str(tmp_path / "out"))
    assert scalars["Features/failed"] == [(0, 1.0)] and scalars["Features/readable"] == [(0, 23.0)]
    [failed] = store.failed
    assert failed["item"] == 5 and failed["path"].startswith(os.path.dirname(first_frame) + os.sep)
    assert f"{failed['path']}: cannot read frame" in failed["reason"] and 5 not in store.rows and len(store.rows) == 23
    cfg.FEW_SHOT.FEATURE_STORE, cfg.OUTPUT_DIR = str(tmp_path / "store"), str(tmp_path / "stored")
    _forbid_backbones(monkeypatch)
    stored = run_test(cfg)
    assert {k: stored[k] for k in cached} == cached
    assert _episode_accs(cfg.OUTPUT_DIR) == _episode_accs(tmp_path / "out")


def test_shards_split_among_ranks_give_the_one_process_store(cfg, tmp_path, monkeypatch):
    """Rank r of 2 writes shards r, r + 2: both ranks' shards together are the one-process store."""
    cfg = _store_cfg(cfg, tmp_path)
    cfg.TEST.BATCH_SIZE = 2
    _extract(cfg, tmp_path / "single")
    cfg.TEST.BATCH_SIZE = 4  # the same 2 clips per forward on each of 2 processes
    monkeypatch.setattr(extract.du, "get_world_size", lambda: 2)
    for rank, shards in ((0, [0, 2]), (1, [1])):
        monkeypatch.setattr(extract.du, "get_rank", lambda: rank)
        monkeypatch.setattr(extract.du, "is_master_proc", lambda: rank == 0)
        seed_everything(0)
        backbone = build_model(cfg).backbone
        dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
        assert extract.extract_store(backbone, dataset, cfg, str(tmp_path / "double"),
                                     run_identity(cfg, dataset_source(cfg, len(dataset)))) == shards
    single, double = FeatureStore(str(tmp_path / "single")), FeatureStore(str(tmp_path / "double"))
    assert single.rows == double.rows
    rows = np.arange(len(single.rows))
    assert all(torch.equal(a, b) for a, b in zip(_fields(single.views[0].index(rows)), _fields(double.views[0].index(rows))))
