"""tools/benchmark.py store (ego_fsar.benchmark.store) on the tiny EgoToy with a tiny Slow ResNet: the
extraction and episode tables hold the rows they should, with the right clip and episode counts (the
speeds themselves are never checked)."""
import re

import pytest

from ego_fsar.datasets.egotoy import EgoToy
from ego_fsar.engine.tester import build_test_model
from ego_fsar.features.extract import extract_store
from ego_fsar.features.identity import dataset_source, run_identity
from ego_fsar.features.store import FeatureStore
from ego_fsar.benchmark.store import forward_pass, store_batches
from tests.tools.test_benchmark import parse_table
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

benchmark = load_tool("benchmark")


@pytest.fixture
def cfg_file(egotoy_root, tmp_path):
    return write_cfg(tiny_cfg(egotoy_root, str(tmp_path / "out")), tmp_path / "tiny.yaml")


def test_store_batches_are_the_extractions_and_the_forward_reads_every_clip(egotoy_root, tmp_path):
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "out"))
    cfg.FEATURES.SHARD_SIZE, cfg.TEST.BATCH_SIZE = 5, 2
    dataset = EgoToy(cfg, "test")
    batches = store_batches(cfg, len(dataset))
    shard_of = [i // 5 for i in range(len(dataset))]
    assert [i for b in batches for i in b] == list(range(len(dataset)))
    assert all(len(b) <= 2 and len({shard_of[i] for i in b}) == 1 for b in batches)  # never across shards
    backbone = build_test_model(cfg)[0].backbone.eval()
    assert forward_pass(backbone, dataset, batches, cfg) == len(dataset)
    store_dir = str(tmp_path / "store")
    extract_store(backbone, dataset, cfg, store_dir, run_identity(cfg, dataset_source(cfg, len(dataset))))
    assert len(FeatureStore(store_dir).rows) == len(dataset)


def test_store_rows_count_clips_and_episodes(cfg_file, egotoy_root, tmp_path, capsys):
    text = benchmark.main(["store", "--cfg", cfg_file, "--episodes", "7", "--uncached-episodes", "2",
                           "--repeats", "2", "--way", "2", "--shot", "1",
                           "FEATURES.SHARD_SIZE", "5", "FEW_SHOT.EPISODE_BATCH", "3"])
    assert capsys.readouterr().out.strip() == text.strip()
    clips = str(len(EgoToy(tiny_cfg(egotoy_root, str(tmp_path)), "test")))
    extraction_table, episode_table = text.split("\n\n")[1], text.split("\n\n")[3]
    extraction = {r["run"]: r for r in parse_table(extraction_table)}
    assert list(extraction) == ["forward, no writing", "store extraction"]
    assert all(r["clips"] == clips and len(r["runs (s)"].split(", ")) == 2 for r in extraction.values())
    episodes = {r["run"]: r for r in parse_table(episode_table)}
    assert list(episodes) == ["from the store, EPISODE_BATCH 3", "from the store, EPISODE_BATCH 1",
                              "in-memory cache, EPISODE_BATCH 3", "without cache (measured)",
                              "without cache (extrapolated to 7)"]
    assert [r["episodes"] for r in episodes.values()] == ["7", "7", "7", "2", "7"]
    # Batched and per-episode scoring of the stored features, and the in-memory cache, agree.
    assert len({episodes[r]["acc %"] for r in list(episodes)[:3]}) == 1
    assert "2-way 1-shot 2-query ProtoNet" in text
    assert re.search(r"store extraction / forward: [\d.]+x \(goal <= 1.05x\)", text)
    assert re.search(r"7 episodes from the store / one backbone pass: [\d.]+x \(goal <= 1.1x\)", text)
    assert re.search(r"without cache \(first 2 episodes timed, .* / from the store: [\d.]+x \(goal >= 50x\)", text)
    assert re.search(r"EPISODE_BATCH 1 / EPISODE_BATCH 3: [\d.]+x", text)
    assert re.search(r"peak RSS of the episodic test from the store in a fresh process \(7 episodes\): \d+ MiB", text)
