"""Ego-Exo: the released state-dict names, the auxiliary losses on known inputs, the targets dataset,
and the per-epoch count of training clips without a teacher entry.

The released models are in github.com/facebookresearch/Ego-Exo (CC BY-NC 4.0, none of its files is
shipped here); their state-dict layout is restated from its module structure:

- `Ego_Exo_SLOWFAST_8x8_R50.pyth` (its Kinetics-400 pre-training, `HandObjKdSlowFastHSlow`, TASK ""):
  PySlowFast's SlowFast R50 (`s1`, ..., `s5`; taken from the PySlowFast key fixture, FUSION_KERNEL_SZ
  7), `head.projections.{0,1,2}` (`MultiTaskHead`: Linear(2304, 400 classes / 2 ego scores / 1000
  object scores)), and `handobjhead` (`HandObjHeadSingle` on the slow pathway, HEAD_NUM_CONV 1,
  HEAD_CONV_DIM 512): `pathway0_conv_fcn0` Conv3d(2048, 512, (1, 3, 3)) and `score_projection`
  Conv3d(512, 2, 1);
- its Ego-Exo* EPIC-100 model (`HandObjMultiTaskSlowFastHSlow`, TASK epic100): the same backbone,
  `headepic100.projections.{0,1}` (97 verbs, 300 nouns) and the same `handobjhead`.
"""
import json
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ego_fsar.config import get_cfg, merge_file
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.exo_targets import clip_key
from ego_fsar.engine import trainer
from ego_fsar.models import build_model
from ego_fsar.models.losses import distillation_kl
from ego_fsar.models.methods.egoexo import EgoExo, interaction_losses, rasterise_boxes
from ego_fsar.utils import checkpoint as cu
from tests.engine.test_train import tiny_train_cfg
from tests.paths import FIXTURES, REPO_ROOT

SLOWFAST_DIM = 2048 + 256


def released_egoexo_keys(heads):
    """{name: shape} of a released Ego-Exo SlowFast R50 state dict with classifier `heads`
    {module name: class counts} and the slow-pathway `handobjhead` (see the module docstring)."""
    ref = json.loads((Path(FIXTURES) / "pyslowfast_slowfast_r50_keys.json").read_text())
    keys = {key: shape for key, shape in ref["state_dict"] if not key.startswith("head.")}
    for name, counts in heads.items():
        for i, count in enumerate(counts):
            keys[f"{name}.projections.{i}.weight"] = [count, SLOWFAST_DIM]
            keys[f"{name}.projections.{i}.bias"] = [count]
    keys.update({"handobjhead.pathway0_conv_fcn0.weight": [512, 2048, 1, 3, 3],
                 "handobjhead.pathway0_conv_fcn0.bias": [512],
                 "handobjhead.score_projection.weight": [2, 512, 1, 1, 1],
                 "handobjhead.score_projection.bias": [2]})
    return keys


KINETICS_RELEASE = {"head": (400, 2, 1000)}
EPIC_STAR_RELEASE = {"headepic100": (97, 300)}


def _release_cfg(train=True, kinetics=True):
    """configs/EPIC-KITCHENS/EGOEXO_SLOWFAST_8x8_R50.yaml; `kinetics`: as the released pre-training
    (400 classes, distillation heads on)."""
    cfg = get_cfg()
    merge_file(cfg, str(Path(REPO_ROOT) / "configs/EPIC-KITCHENS/EGOEXO_SLOWFAST_8x8_R50.yaml"))
    cfg.NUM_GPUS, cfg.TRAIN.ENABLE = 0, train
    if kinetics:
        cfg.MODEL.NUM_CLASSES, cfg.EGOEXO.KD = 400, True
    return cfg


def _shapes(cfg):
    with torch.device("meta"):
        model = build_model(cfg)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def test_state_dicts_are_the_released_ones():
    assert _shapes(_release_cfg()) == released_egoexo_keys(KINETICS_RELEASE)
    assert _shapes(_release_cfg(kinetics=False)) == released_egoexo_keys(EPIC_STAR_RELEASE)
    # The test-only model: the classifier alone.
    ego_only = released_egoexo_keys({"head": (400,)})
    assert _shapes(_release_cfg(train=False)) == {k: s for k, s in ego_only.items() if not k.startswith("handobjhead.")}


def test_released_checkpoint_loads_with_nothing_missing_or_unexpected(tmp_path, caplog):
    path = str(tmp_path / "Ego_Exo_SLOWFAST_8x8_R50.pyth")
    keys = released_egoexo_keys(KINETICS_RELEASE)
    g = torch.Generator().manual_seed(0)
    state = {k: torch.rand(s, generator=g) if "projection" in k else torch.zeros(s) for k, s in keys.items()}
    torch.save({"model_state": state, "epoch": 196}, path)
    model = build_model(_release_cfg())
    with caplog.at_level(logging.INFO):
        cu.load_checkpoint(path, model, strict=True)
    assert f"{len(keys)} loaded, 0 missing, 0 unexpected, 0 shape-mismatched" in caplog.text
    assert torch.equal(model.head.projections[2].weight, state["head.projections.2.weight"])
    assert torch.equal(model.handobjhead.score_projection.weight, state["handobjhead.score_projection.weight"])


def tiny_cfg(train=True, kd=True):
    """An EgoExo R18 SlowFast of width 4 with EPIC-style verb/noun heads [3, 5]."""
    cfg = get_cfg()
    cfg.NUM_GPUS, cfg.TRAIN.ENABLE = 0, train
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = "EgoExo", "slowfast", [3, 5]
    cfg.DATA.INPUT_CHANNEL_NUM = [3, 3]
    cfg.RESNET.DEPTH, cfg.RESNET.WIDTH_PER_GROUP = 18, 4
    cfg.RESNET.NUM_BLOCK_TEMP_KERNEL = [[2], [2], [2], [2]]
    cfg.SLOWFAST.ALPHA, cfg.SLOWFAST.BETA_INV = 4, 4
    cfg.EGOEXO.KD, cfg.EGOEXO.NUM_OBJECT_CLASSES, cfg.EGOEXO.HEAD_CONV_DIM = kd, 7, 16
    cfg.EGOEXO.KD_TEMPERATURE = 2.0
    return cfg


def _clips(batch=3, size=32):
    torch.manual_seed(0)
    fast = torch.randn(batch, 3, 8, size, size)
    return [fast[:, :, ::4].clone(), fast]


def test_trained_checkpoint_loads_into_the_test_only_model_with_the_auxiliary_keys_reported(tmp_path, caplog):
    trained = build_model(tiny_cfg())
    path = str(tmp_path / "egoexo.pyth")
    torch.save({"model_state": trained.state_dict()}, path)
    ego_only = build_model(tiny_cfg(train=False))
    aux = sorted(set(trained.state_dict()) - set(ego_only.state_dict()))
    assert aux == ["handobjhead.pathway0_conv_fcn0.bias", "handobjhead.pathway0_conv_fcn0.weight",
                   "handobjhead.score_projection.bias", "handobjhead.score_projection.weight",
                   "headepic100.projections.2.bias", "headepic100.projections.2.weight",
                   "headepic100.projections.3.bias", "headepic100.projections.3.weight"]
    with caplog.at_level(logging.INFO):
        cu.load_checkpoint(path, ego_only, strict=True)
    assert "0 missing" in caplog.text and caplog.text.count(f"{len(aux)} unexpected keys") == 1
    trained.eval(), ego_only.eval()
    with torch.no_grad():
        ours, theirs = ego_only(_clips()), trained(_clips())
    assert set(ours) == set(theirs) == {"verb", "noun", "embeddings"}
    assert torch.allclose(ours["noun"], theirs["noun"])


def test_fine_tuning_from_a_kinetics_egoexo_checkpoint_keeps_its_interaction_head(tmp_path):
    """The release's Ego-Exo* recipe: EPIC verb/noun heads without distillation, initialised from the
    Kinetics model (one classifier and the distillation heads in `head.projections.*`)."""
    kinetics_cfg = tiny_cfg()
    kinetics_cfg.MODEL.NUM_CLASSES = 6
    kinetics = build_model(kinetics_cfg)
    assert len(kinetics.head.projections) == 3
    path = str(tmp_path / "Ego_Exo_kinetics.pyth")
    torch.save({"model_state": kinetics.state_dict(), "epoch": 196}, path)
    cfg = tiny_cfg(kd=False)
    cfg.TRAIN.CHECKPOINT_FILE_PATH = path
    model = build_model(cfg)
    initial = model.headepic100.projections[0].weight.clone()
    cu.load_train_checkpoint(cfg, model, optimizer=None)
    assert torch.equal(model.handobjhead.pathway0_conv_fcn0.weight, kinetics.handobjhead.pathway0_conv_fcn0.weight)
    assert torch.equal(model.backbone.s5.pathway0_res0.branch2.a.weight,
                       kinetics.backbone.s5.pathway0_res0.branch2.a.weight)
    assert torch.equal(model.headepic100.projections[0].weight, initial)


def test_rasterise_boxes_follows_the_release_cells_and_scores():
    boxes = torch.tensor([[[0, 0.0, 0.0, 0.3, 0.3, 0.6], [0, 0.2, 0.2, 0.4, 0.6, 0.9],
                           [1, 0.5, 0.5, 1.0, 1.0, 0.7], [-1, 0.0, 0.0, 1.0, 1.0, 1.0]]])
    hand, obj = torch.zeros(4, 4), torch.zeros(4, 4)
    hand[:2, :2] = 0.6  # floor(0.3 * 4) = 1: cells 0..1, inclusive
    hand[:3, :2] = 0.9  # rows floor(0.8)..floor(2.4), cols 0..1: the larger score wins
    obj[2:, 2:] = 0.7  # floor(4.0) = 4 is clamped to the last cell
    soft = rasterise_boxes(boxes, 4, 4)
    assert torch.allclose(soft[0, 0], hand) and torch.allclose(soft[0, 1], obj)
    hard = rasterise_boxes(boxes, 4, 4, soft=False)
    assert torch.equal(hard[0, 0], (hand > 0).float()) and torch.equal(hard[0, 1], (obj > 0).float())


def test_interaction_losses_are_per_frame_bce_of_each_map_over_kept_clips():
    maps = torch.randn(2, 2, 3, 4, 4)
    boxes = torch.full((2, 2, 6), -1.0)
    boxes[0, 0] = torch.tensor([0, 0.0, 0.0, 0.4, 0.4, 0.8])
    boxes[0, 1] = torch.tensor([1, 0.5, 0.0, 1.0, 0.2, 1.0])
    hand_t, obj_t = torch.zeros(4, 4), torch.zeros(4, 4)
    hand_t[:2, :2], obj_t[0, 2:] = 0.8, 1.0
    keep = torch.tensor([True, False])
    hand, obj = interaction_losses(maps, boxes, keep)
    assert hand.item() == pytest.approx(F.binary_cross_entropy_with_logits(maps[0, 0], hand_t.expand(3, 4, 4)).item())
    assert obj.item() == pytest.approx(F.binary_cross_entropy_with_logits(maps[0, 1], obj_t.expand(3, 4, 4)).item())
    assert [v.item() for v in interaction_losses(maps, boxes, torch.tensor([False, False]))] == [0.0, 0.0]


def test_training_forward_distils_only_clips_with_a_teacher_and_counts_the_others():
    model = build_model(tiny_cfg()).train()
    assert model.BATCH_INPUTS == EgoExo.KD_TARGETS + EgoExo.HOI_TARGETS
    teacher_ego, teacher_object = torch.randn(3, 2), torch.randn(3, 7)
    has_teacher = torch.tensor([True, False, True])
    boxes = torch.full((3, 8, 6), -1.0)
    boxes[:, 0] = torch.tensor([0, 0.1, 0.1, 0.6, 0.6, 1.0])
    out = model(_clips(), teacher_ego, teacher_object, has_teacher, boxes, torch.ones(3, dtype=torch.bool))
    expected = distillation_kl(out["object_scores"][has_teacher], teacher_object[has_teacher], 2.0, 1.0)
    assert out["loss_kd_object"].item() == pytest.approx(expected.item())
    assert out["count_kd_missing_teacher"].item() == 1
    assert out["verb"].shape == (3, 3) and out["ego_scores"].shape == (3, 2)
    assert out["hoi_maps"].shape == (3, 2, 2, 1, 1) and out["loss_hand"].item() > 0
    model.eval()
    assert model.BATCH_INPUTS == () and "hoi_maps" not in model(_clips())
    without_kd = build_model(tiny_cfg(kd=False)).train()
    assert without_kd.BATCH_INPUTS == EgoExo.HOI_TARGETS
    assert len(without_kd.headepic100.projections) == 2


@pytest.fixture
def egoexo_cfg(cfg, tmp_path):
    cfg = tiny_train_cfg(cfg, tmp_path, arch="slowfast")
    cfg.MODEL.MODEL_NAME, cfg.TRAIN.DATASET = "EgoExo", "EgoExoTargets"
    cfg.EGOEXO.DATASET, cfg.EGOEXO.NUM_OBJECT_CLASSES, cfg.EGOEXO.HEAD_CONV_DIM = "EgoToy", 7, 16
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


def test_targets_dataset_lists_missing_teachers_and_pads_boxes(egoexo_cfg, tmp_path, caplog):
    keys = _write_targets(egoexo_cfg, tmp_path, skip_first=2)
    with caplog.at_level(logging.WARNING):
        data = build_dataset("EgoExoTargets", egoexo_cfg, "train")
    assert data.missing_teacher == keys[:2]
    assert f"2 of {len(keys)} train clips have no entry in EGOEXO.TEACHER_FILE" in caplog.text
    assert keys[0] in caplog.text
    first = data[0]
    assert not first["has_teacher"] and torch.equal(first["teacher_object"], torch.zeros(7))
    assert first["has_boxes"] and first["hoi_boxes"].shape == (8, 6)
    assert first["hoi_boxes"][0].tolist() == pytest.approx([0, 0.1, 0.1, 0.6, 0.6, 1.0])  # score defaults to 1
    assert first["hoi_boxes"][2, 0] == -1 and data[2]["has_teacher"]
    egoexo_cfg.EGOEXO.KD = False
    assert "has_teacher" not in build_dataset("EgoExoTargets", egoexo_cfg, "train")[0]


def test_each_epoch_reports_its_clips_without_a_teacher(egoexo_cfg, tmp_path):
    """A count summed over the epoch (3 clips in 4 batches of 4), not a mean over batches or clips."""
    keys = _write_targets(egoexo_cfg, tmp_path, skip_first=3)
    assert len(keys) % egoexo_cfg.TRAIN.BATCH_SIZE == 0  # every clip is seen once per epoch
    egoexo_cfg.LOSS.WEIGHTS = [["kd_ego", 1.0], ["kd_object", 1.0], ["hand", 1.0], ["obj", 1.0]]
    trainer.train(egoexo_cfg)
    with open(os.path.join(tmp_path, "json_stats.log")) as f:
        epochs = [r for r in map(json.loads, f) if r["_type"] == "train_epoch"]
    assert len(epochs) == 2 and [r["kd_missing_teacher"] for r in epochs] == [3, 3]
    log = open(os.path.join(tmp_path, "stdout.log")).read()
    assert "Epoch 1: kd_missing_teacher = 3" in log and "Epoch 2: kd_missing_teacher = 3" in log
    assert all(r["loss_hand"] > 0 and r["loss_kd_object"] >= 0 for r in epochs)
