"""Ego-Exo's auxiliary losses on known inputs, the targets dataset (missing teacher entries reported),
and a short training run on the tiny EgoToy."""
import json
import logging
import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.exo_targets import clip_key
from ego_fsar.engine import trainer
from ego_fsar.models import build_model
from ego_fsar.models.losses import distillation_kl
from ego_fsar.models.methods.egoexo import EgoExo, rasterise_boxes
from tests.engine.test_train import tiny_train_cfg


def test_rasterise_boxes_on_a_4x4_grid():
    boxes = torch.tensor([[[0, 0.0, 0.0, 0.5, 0.5], [1, 0.5, 0.5, 1.0, 1.0], [-1, 0.0, 0.0, 1.0, 1.0]]])
    maps = rasterise_boxes(boxes, 4, 4)
    hand, obj = torch.zeros(4, 4), torch.zeros(4, 4)
    hand[:2, :2] = 1
    obj[2:, 2:] = 1
    assert torch.equal(maps[0, 0], hand) and torch.equal(maps[0, 1], obj)


def test_interaction_loss_is_bce_against_rasterised_boxes_of_kept_rows():
    maps = torch.randn(2, 2, 4, 4)
    boxes = torch.full((2, 3, 5), -1.0)
    boxes[0, 0] = torch.tensor([0, 0.0, 0.0, 0.5, 0.5])
    keep = torch.tensor([True, False])
    target = torch.zeros(1, 2, 4, 4)
    target[0, 0, :2, :2] = 1
    expected = F.binary_cross_entropy_with_logits(maps[:1], target)
    assert float(EgoExo.interaction_loss(maps, boxes, keep)) == pytest.approx(float(expected))
    assert float(EgoExo.interaction_loss(maps, boxes, torch.tensor([False, False]))) == 0.0


@pytest.fixture
def egoexo_cfg(cfg, tmp_path):
    cfg = tiny_train_cfg(cfg, tmp_path, arch="slowfast")
    cfg.MODEL.MODEL_NAME, cfg.TRAIN.DATASET = "EgoExo", "EgoExoTargets"
    cfg.EGOEXO.DATASET, cfg.EGOEXO.NUM_OBJECT_CLASSES, cfg.EGOEXO.KD_TEMPERATURE = "EgoToy", 7, 2.0
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.EVAL_PERIOD = 1, 1
    return cfg


def _write_targets(cfg, tmp_path, skip_first: int):
    data = build_dataset("EgoToy", cfg, "train")
    keys = [clip_key(data, c) for c in range(data.num_clips)]
    g = torch.Generator().manual_seed(0)
    teachers = {k: {"ego": torch.randn(2, generator=g).tolist(), "object": torch.randn(7, generator=g).tolist()}
                for k in keys[skip_first:]}
    boxes = {k: [[0, 0.1, 0.1, 0.6, 0.6], [1, 0.4, 0.4, 0.9, 0.9]] for k in keys}
    for name, table in (("teacher.pkl", teachers), ("boxes.pkl", boxes)):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(table, f)
    cfg.EGOEXO.TEACHER_FILE, cfg.EGOEXO.BOXES_FILE = str(tmp_path / "teacher.pkl"), str(tmp_path / "boxes.pkl")
    return keys


def test_missing_teacher_entries_are_reported(egoexo_cfg, tmp_path, caplog):
    keys = _write_targets(egoexo_cfg, tmp_path, skip_first=2)
    with caplog.at_level(logging.WARNING):
        data = build_dataset("EgoExoTargets", egoexo_cfg, "train")
    assert data.missing_teacher == keys[:2]
    assert f"2 of {len(keys)} train clips have no entry in EGOEXO.TEACHER_FILE" in caplog.text
    assert keys[0] in caplog.text
    first = data[0]
    assert not first["has_teacher"] and torch.equal(first["teacher_object"], torch.zeros(7))
    assert first["has_boxes"] and first["hoi_boxes"].shape == (8, 5) and first["hoi_boxes"][2, 0] == -1
    assert data[2]["has_teacher"]


def test_distillation_uses_only_clips_with_a_teacher(egoexo_cfg):
    model = build_model(egoexo_cfg).train()
    assert model.BATCH_INPUTS == EgoExo.TARGETS
    torch.manual_seed(0)
    fast = torch.randn(3, 3, 4, 24, 24)
    teacher_ego, teacher_object = torch.randn(3, 2), torch.randn(3, 7)
    has_teacher = torch.tensor([True, False, True])
    boxes = torch.full((3, 8, 5), -1.0)
    has_boxes = torch.ones(3, dtype=torch.bool)
    out = model([fast[:, :, ::2], fast], teacher_ego, teacher_object, has_teacher, boxes, has_boxes)
    keep = has_teacher
    expected = distillation_kl(out["object_scores"][keep], teacher_object[keep], 2.0, 1.0)
    assert out["loss_kd_object"].item() == pytest.approx(expected.item())
    assert out["hoi_maps"].shape[:2] == (3, 2) and out["loss_hoi"].item() > 0
    model.eval()
    assert model.BATCH_INPUTS == ()


def test_short_training_run_logs_and_finishes(egoexo_cfg, tmp_path):
    _write_targets(egoexo_cfg, tmp_path, skip_first=1)
    egoexo_cfg.LOSS.WEIGHTS = [["kd_ego", 1.0], ["kd_object", 1.0], ["hoi", 1.0]]
    trainer.train(egoexo_cfg)
    with open(os.path.join(tmp_path, "json_stats.log")) as f:
        records = [json.loads(line) for line in f]
    assert {"train_epoch", "val_epoch"} <= {r["_type"] for r in records}
