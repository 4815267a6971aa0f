"""Unreadable test clips: the multi-view and the episodic test skip them after their retries, count
them and score the rest (stopping only past DATA_LOADER.MAX_FAILURES); TEST.SAVE_RESULTS_PATH."""
import csv
import json
import os
import pickle
import shutil

import pytest
import torch

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import episodes_for_cfg
from ego_fsar.datasets.utils import TooManyFailuresError
from ego_fsar.engine.fewshot_test import EPISODES_JSON, episodic_test
from ego_fsar.engine.tester import multiview_test
from ego_fsar.models import build_model
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import seed_everything
from ego_fsar.utils.launch import launch_job
from tests.egotoy import egotoy_cfg, frame_path
from tests.engine.test_fewshot import fewshot_cfg
from tests.engine.test_train import tiny_train_cfg

RESULTS = os.path.join("results", "test.pkl")


@pytest.fixture
def root(egotoy_root, tmp_path) -> str:
    """A copy of the tiny EgoToy that a test may break."""
    copy = str(tmp_path / "egotoy")
    shutil.copytree(egotoy_root, copy)
    return copy


def break_clip(root: str, split: str, clip: int) -> str:
    """Truncate every frame of clip `clip` of EgoToy split `split`; returns its first frame's path."""
    with open(os.path.join(root, "annotations", f"EgoToy_{split}.csv"), newline="") as f:
        row = list(csv.DictReader(f))[clip]
    paths = [frame_path(root, row["participant_id"], row["video_id"], i)
             for i in range(int(row["start_frame"]), int(row["stop_frame"]) + 1)]
    for path in paths:
        with open(path, "r+b") as f:
            f.truncate(10)
    return paths[0]


def classifier_cfg(root: str, out_dir, views: int = 2):
    """Untrained tiny classifier, multi-view test of `views` temporal views on the 8 val clips, with
    TEST.SAVE_RESULTS_PATH and 1 retry."""
    cfg = tiny_train_cfg(egotoy_cfg(root), out_dir)
    cfg.TEST.SPLIT, cfg.TEST.NUM_ENSEMBLE_VIEWS = "val", views
    cfg.TEST.SAVE_RESULTS_PATH = RESULTS
    cfg.DATA_LOADER.MAX_RETRIES = 1
    return cfg


def run_multiview(cfg):
    """The multi-view test of a seeded untrained model; the master writes stats.json."""
    seed_everything(0)
    stats = multiview_test(cfg, build_model(cfg))
    if du.is_master_proc():
        with open(os.path.join(cfg.OUTPUT_DIR, "stats.json"), "w") as f:
            json.dump(stats, f)
    return stats


def _results(cfg):
    with open(os.path.join(cfg.OUTPUT_DIR, RESULTS), "rb") as f:
        return pickle.load(f)


def test_multiview_test_skips_an_unreadable_clip(root, tmp_path):
    intact = classifier_cfg(root, tmp_path / "intact")
    intact_stats = run_multiview(intact)
    assert (intact_stats["videos_evaluated"], intact_stats["videos_skipped"], intact_stats["clips_skipped"]) == (8, 0, 0)
    preds, labels = _results(intact)
    assert preds.shape == (8, 4) and labels.shape == (8,) and not preds.isnan().any()

    break_clip(root, "val", 3)
    broken = classifier_cfg(root, tmp_path / "broken")
    stats = run_multiview(broken)
    assert (stats["videos_evaluated"], stats["videos_skipped"], stats["clips_skipped"]) == (7, 1, 2)
    readable = torch.arange(8) != 3
    expected = 100.0 * (preds[readable].argmax(1) == labels[readable]).float().mean().item()
    assert stats["top1_acc"] == pytest.approx(expected)
    broken_preds, broken_labels = _results(broken)
    assert torch.allclose(broken_preds[readable], preds[readable]) and broken_preds[3].isnan().all()
    assert torch.equal(broken_labels[readable], labels[readable]) and broken_labels[3] == -1


def test_multiview_test_stops_past_max_failures_naming_the_paths(root, tmp_path):
    paths = [break_clip(root, "val", clip) for clip in (2, 5)]
    cfg = classifier_cfg(root, tmp_path / "two", views=1)
    cfg.DATA_LOADER.MAX_FAILURES = 2
    assert run_multiview(cfg)["clips_skipped"] == 2
    cfg.DATA_LOADER.MAX_FAILURES = 1
    with pytest.raises(TooManyFailuresError, match="MAX_FAILURES is 1") as err:
        run_multiview(cfg)
    assert all(p in str(err.value) for p in paths)


def test_save_results_of_verb_noun_labels(root, tmp_path):
    cfg = classifier_cfg(root, tmp_path, views=1)
    cfg.MODEL.NUM_CLASSES = [10, 10]  # EgoToy's verbs and nouns
    stats = run_multiview(cfg)
    assert "action_top1_acc" in stats
    preds, labels = _results(cfg)
    assert {k: tuple(v.shape) for k, v in preds.items()} == {"verb": (8, 10), "noun": (8, 10)}
    assert {k: tuple(v.shape) for k, v in labels.items()} == {"verb": (8,), "noun": (8,)}
    assert not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "results", f"test.pkl.tmp.{os.getpid()}"))


def test_distributed_multiview_test_with_an_unreadable_clip_equals_single_process(root, tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    break_clip(root, "val", 1)  # rank 1's first batch keeps one item, rank 0's two
    single = classifier_cfg(root, tmp_path / "single", views=1)
    os.makedirs(single.OUTPUT_DIR)
    run_multiview(single)
    double = single.clone()
    double.OUTPUT_DIR, double.NUM_CPU_PROCS = str(tmp_path / "double"), 2
    os.makedirs(double.OUTPUT_DIR)
    launch_job(double, run_multiview)
    a, b = (json.load(open(tmp_path / d / "stats.json")) for d in ("single", "double"))
    assert a == b and a["videos_skipped"] == 1


@pytest.mark.parametrize("cache", [True, False])
def test_episodic_test_drops_the_episodes_of_an_unreadable_clip(root, tmp_path, cache):
    intact = fewshot_cfg(egotoy_cfg(root), tmp_path / "intact")
    intact.FEW_SHOT.USE_FEATURE_CACHE, intact.DATA_LOADER.MAX_RETRIES = cache, 1
    seed_everything(0)
    episodic_test(intact, build_model(intact))
    accs = [e["acc"] for e in json.load(open(tmp_path / "intact" / EPISODES_JSON))["episodes"]]

    episodes = episodes_for_cfg(intact, build_dataset("egotoy", intact, "test").labels)
    uses = [{*e.support, *e.query} for e in episodes]
    clip = next(c for c in sorted(set.union(*uses)) if 0 < sum(c in u for u in uses) < len(uses))
    dropped = [clip in u for u in uses]
    break_clip(root, "test", clip)
    broken = intact.clone()
    broken.OUTPUT_DIR = str(tmp_path / "broken")
    seed_everything(0)
    summary = episodic_test(broken, build_model(broken))
    assert summary["dropped_episodes"] == sum(dropped) and summary["skipped_clips"] == 1
    assert summary["episodes"] == len(episodes) - sum(dropped)
    kept = [acc for acc, d in zip(accs, dropped) if not d]
    assert summary["acc"] == pytest.approx(100.0 * sum(kept) / len(kept))
    record = json.load(open(tmp_path / "broken" / EPISODES_JSON))["episodes"]
    assert [e["acc"] is None for e in record] == dropped
