"""Training end to end for each kind of label: multi-label (mAP) and verb/noun (action error) with
validation and best-on-val selection; the loop's non-finite checks; the fp16 all-reduce hook."""
import json
import logging
import os
import shutil

import pytest
import torch
import torch.distributed as dist

from ego_fsar.datasets import build_dataset
from ego_fsar.engine import trainer
from ego_fsar.engine.tester import test as run_test
from ego_fsar.engine.best_checkpoint import BestCheckpoint, best_metric_name
from ego_fsar.utils import checkpoint as cu
from tests.datasets.stand_ins import write_charades
from tests.egotoy import egotoy_cfg
from tests.engine.test_train import tiny_train_cfg
from tests.engine.test_unreadable_clips import break_clip


def _records(out_dir, kind):
    with open(os.path.join(out_dir, "json_stats.log")) as f:
        return [r for r in map(json.loads, f) if r["_type"] == kind]


def _best(out_dir):
    return torch.load(os.path.join(cu.get_checkpoint_dir(str(out_dir)), cu.BEST_CHECKPOINT), weights_only=False)


def _log(out_dir):
    with open(os.path.join(out_dir, "stdout.log")) as f:
        return f.read()


def test_multi_label_training_validates_with_map(tmp_path):
    cfg = tiny_train_cfg(write_charades(str(tmp_path / "charades")), tmp_path / "out")
    cfg.DATA.MULTI_LABEL, cfg.MODEL.LOSS_FUNC, cfg.MODEL.HEAD_ACT = True, "bce_logit", "sigmoid"
    cfg.MODEL.NUM_CLASSES = 157
    trainer.train(cfg)
    val = _records(cfg.OUTPUT_DIR, "val_epoch")
    assert len(val) == 2 and all(0.0 <= r["map"] <= 100.0 for r in val)
    assert "selects on map (higher is better)" in _log(cfg.OUTPUT_DIR)
    best = _best(cfg.OUTPUT_DIR)["best_metric"]
    assert best == {"name": "map", "value": pytest.approx(max(r["map"] for r in val))}


def test_verb_noun_training_selects_on_action_error(cfg, tmp_path):
    cfg = tiny_train_cfg(cfg, tmp_path)
    cfg.MODEL.NUM_CLASSES = [10, 10]  # EgoToy's verbs (motion pairs) and nouns (digits)
    trainer.train(cfg)
    val = _records(cfg.OUTPUT_DIR, "val_epoch")
    assert "top1_err" not in val[0] and {"verb_top1_err", "noun_top1_err", "action_top1_err"} <= set(val[0])
    (epoch, _) = _records(cfg.OUTPUT_DIR, "train_epoch")
    assert epoch["loss"] == pytest.approx(epoch["loss_cls"])  # each loss part is logged
    assert epoch["loss_cls"] == pytest.approx(epoch["loss_cls_verb"] + epoch["loss_cls_noun"])
    assert "selects on action_top1_err (lower is better)" in _log(cfg.OUTPUT_DIR)
    best = _best(cfg.OUTPUT_DIR)["best_metric"]
    assert best == {"name": "action_top1_err", "value": pytest.approx(min(r["action_top1_err"] for r in val))}
    result = run_test(cfg)  # PySlowFast's multi-view test of the run's best checkpoint
    assert f"Testing {cu.get_best_checkpoint_path(cfg.OUTPUT_DIR)} (OUTPUT_DIR's best" in _log(cfg.OUTPUT_DIR)
    assert {"verb_top1_acc", "noun_top1_acc", "action_top1_acc"} <= set(result)
    cfg.TEST.CHECKPOINT_FILE_PATH = cu.get_best_checkpoint_path(cfg.OUTPUT_DIR)
    assert run_test(cfg) == result


@pytest.mark.parametrize("overrides, metric", [
    ({}, "top1_err"),
    ({"MODEL.NUM_CLASSES": [97, 300]}, "action_top1_err"),
    ({"DATA.MULTI_LABEL": True}, "map"),
    ({"TRAIN.BEST_METRIC": "verb_top1_err", "MODEL.NUM_CLASSES": [97, 300]}, "verb_top1_err"),
])
def test_best_metric_follows_the_task(cfg, overrides, metric):
    cfg.merge_from_list([x for kv in overrides.items() for x in (kv[0], str(kv[1]))])
    assert best_metric_name(cfg) == metric


def test_best_checkpoint_keeps_the_better_value_and_warns_once_on_a_missing_metric(cfg, tmp_path, caplog):
    cfg.OUTPUT_DIR, cfg.NUM_GPUS = str(tmp_path), 0
    cfg.TRAIN.BEST_METRIC = "map"
    model = torch.nn.Linear(2, 2)
    best = BestCheckpoint(cfg)
    assert best.step({"map": 40.0}, model, None, 0) and not best.step({"map": 30.0}, model, None, 1)
    assert best.step({"map": 50.0}, model, None, 2) and _best(tmp_path)["epoch"] == 2
    with caplog.at_level(logging.WARNING):
        assert not best.step({"top1_err": 1.0}, model, None, 3) and not best.step({}, model, None, 4)
    assert caplog.text.count("TRAIN.BEST_METRIC map is not among the validation stats (top1_err)") == 1
    resumed = BestCheckpoint(cfg)
    assert resumed.best == 50.0 and not resumed.step({"map": 45.0}, model, None, 5)
    cfg.TRAIN.BEST_METRIC = "top1_err"
    with caplog.at_level(logging.WARNING):
        assert BestCheckpoint(cfg).step({"top1_err": 90.0}, model, None, 6)
    assert "was selected on map, this run selects on top1_err" in caplog.text


def _poison_gradients(monkeypatch):
    build = trainer.build_model

    def build_with_inf_grad(cfg):
        model = build(cfg)
        next(model.parameters()).register_hook(lambda grad: grad * float("inf"))
        return model

    monkeypatch.setattr(trainer, "build_model", build_with_inf_grad)


def _poison_weights(monkeypatch):
    monkeypatch.setattr(trainer, "get_lr_at_epoch", lambda cfg, epoch: float("inf"))


@pytest.mark.parametrize("poison, what", [(_poison_gradients, "gradients"), (_poison_weights, "weights")])
def test_non_finite_step_stops_before_any_checkpoint(cfg, tmp_path, monkeypatch, poison, what):
    cfg = tiny_train_cfg(cfg, tmp_path)
    poison(monkeypatch)
    with pytest.raises(FloatingPointError, match=f"non-finite {what} at epoch 1, iteration 1"):
        trainer.train(cfg)
    assert cu.get_last_checkpoint(str(tmp_path)) is None


def test_fp16_allreduce_installs_the_compression_hook(cfg):
    cfg.MODEL.FP16_ALLREDUCE = True
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        model = trainer.wrap_ddp(torch.nn.Linear(2, 2), cfg, torch.device("cpu"))
        assert model._get_ddp_logging_data().get("comm_hook") == "fp16_compress_hook"
    finally:
        dist.destroy_process_group()


def test_validation_leaves_out_an_unreadable_clip_and_counts_it(egotoy_root, tmp_path):
    """Training replaces an unreadable training clip; validation leaves an unreadable clip out (no
    other clip's label stands in for it), counts it and scores the rest."""
    root = str(tmp_path / "egotoy")
    shutil.copytree(egotoy_root, root)
    break_clip(root, "val", 0)
    cfg = tiny_train_cfg(egotoy_cfg(root), tmp_path / "out")
    cfg.SOLVER.MAX_EPOCH, cfg.DATA_LOADER.MAX_RETRIES = 1, 1
    trainer.train(cfg)
    skipped = _records(cfg.OUTPUT_DIR, "data_skipped")
    assert skipped == [{"_type": "data_skipped", "epoch": 1, "split": "val", "skipped": 1}]
    (val,) = _records(cfg.OUTPUT_DIR, "val_epoch")
    num_val = len(build_dataset("egotoy", cfg, "val"))
    assert val["samples"] == num_val - 1 and val["skipped"] == 1
