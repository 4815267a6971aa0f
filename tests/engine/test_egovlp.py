"""EgoVLP end to end: the EgoMCQ metric on a hand-made file (inter = type 1, intra = type 2, not swapped),
a tiny EgoNCE pre-training on EgoToy narrations followed by the EgoMCQ test, and the zero-shot
(FEW_SHOT.SHOT 0) episodic test of the trained towers, and a FewShot ProtoNet model initialised from them."""
import json
import os

import numpy as np
import torch

from ego_fsar.config import get_cfg
from ego_fsar.engine.egomcq_test import egomcq_test, mcq_accuracy
from ego_fsar.engine.tester import test as run_test
from ego_fsar.engine.trainer import train
from ego_fsar.models import build_model
from ego_fsar.utils.checkpoint import load_test_checkpoint
from tests.datasets.test_egoclip import egoclip_cfg, write_chunks
from tests.egotoy import egotoy_cfg
from tests.egotoy_egoclip import egotoy_egoclip_root, egovlp_cfg  # noqa: F401 (fixture)


class BrightestClip(torch.nn.Module):
    """Scores a clip by its mean pixel value, whatever the text."""

    def encode_video(self, inputs):
        return inputs[0].mean((1, 2, 3, 4)).unsqueeze(1)

    def encode_text(self, texts):
        return torch.ones(len(texts), 1)


def _clip(video, start):
    return {"video_uid": video, "clip_start": start, "clip_end": start + 0.5, "clip_text": "#C C opens the tap"}


def test_mcq_accuracy_keeps_each_type_its_name():
    scores = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    stats = mcq_accuracy(scores, torch.tensor([1, 1, 0]), torch.tensor([1, 2, 2]))
    assert stats == {"inter_video_acc": 100.0, "inter_video_questions": 1, "intra_video_acc": 0.0,
                     "intra_video_questions": 2}


def test_egomcq_on_a_hand_made_file(tmp_path):
    """Chunk k of video "v" is grey level 40 * (k + 1): the brightest clip is the last one. The inter-video
    question's answer is the brightest choice, the intra-video one's the darkest."""
    write_chunks(tmp_path, "v", [40, 80, 120, 160, 200])
    choices = {str(k): _clip("v", float(k)) for k in range(5)}
    questions = {"0": {"query": _clip("v", 4.0), "choices": choices, "answer": 4, "types": 1},
                 "1": {"query": _clip("v", 0.0), "choices": choices, "answer": 0, "types": 2},
                 "2": {"query": _clip("v", 4.0), "choices": choices, "answer": 4, "types": 2}}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "egomcq.json").write_text(json.dumps(questions))
    cfg = egoclip_cfg(str(tmp_path))
    cfg.TEST.DATASET, cfg.NUM_GPUS, cfg.OUTPUT_DIR = "egomcq", 0, str(tmp_path)
    stats = egomcq_test(cfg, BrightestClip())
    assert stats == {"inter_video_acc": 100.0, "inter_video_questions": 1, "intra_video_acc": 50.0,
                     "intra_video_questions": 2, "skipped": 0}


def _losses(out_dir):
    with open(os.path.join(out_dir, "json_stats.log")) as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if r.get("_type") == "train_epoch"], [r for r in records if r.get("_type") == "egomcq"]


def test_pretrain_then_egomcq_then_zero_shot(egotoy_egoclip_root, egotoy_root, tmp_path):
    cfg = egovlp_cfg(egotoy_egoclip_root, str(tmp_path / "pretrain"))
    cfg.TEXT.CACHE_DIR = str(tmp_path / "text_cache")
    train(cfg)
    stats = run_test(cfg)
    epochs, mcq = _losses(cfg.OUTPUT_DIR)
    assert len(epochs) == 1 and np.isfinite(epochs[0]["loss"])
    assert mcq and {"inter_video_acc", "intra_video_acc"} <= set(stats) and stats["skipped"] == 0
    assert stats["inter_video_questions"] + stats["intra_video_questions"] == 32

    zero = egotoy_cfg(egotoy_root)
    zero.merge_from_list(["MODEL.MODEL_NAME", "VideoText", "MODEL.ARCH", "vit", "DATA.INPUT_CHANNEL_NUM", [3]])
    for key in ("VIT", "EGOVLP", "TEXT"):
        zero[key] = cfg[key].clone()
    zero.DATA.TRAIN_CROP_SIZE, zero.DATA.TEST_CROP_SIZE, zero.NUM_GPUS = 32, 32, 0
    zero.HEAD.NAME, zero.TEST.PROTOCOL, zero.TEST.SPLIT = "TextZeroShot", "episodic", "test"
    zero.FEW_SHOT.WAY, zero.FEW_SHOT.SHOT, zero.FEW_SHOT.QUERY, zero.FEW_SHOT.TEST_EPISODES = 3, 0, 2, 4
    zero.OUTPUT_DIR = str(tmp_path / "zero_shot")
    zero.TEST.CHECKPOINT_FILE_PATH = os.path.join(cfg.OUTPUT_DIR, "checkpoints", "checkpoint_epoch_00001.pyth")
    summary = run_test(zero)
    assert summary["shot"] == 0 and summary["episodes"] == 4 and 0 <= summary["acc"] <= 100
    zero.FEW_SHOT.USE_FEATURE_CACHE, zero.OUTPUT_DIR = False, str(tmp_path / "zero_shot_uncached")
    assert run_test(zero)["acc"] == summary["acc"]

    fewshot = fewshot_from_pretrain(zero, str(tmp_path / "fewshot"))
    model = build_model(fewshot)
    load_test_checkpoint(fewshot, model)
    stored = torch.load(fewshot.TEST.CHECKPOINT_FILE_PATH, weights_only=False)["model_state"]
    backbone = model.backbone.state_dict()
    # The position table is interpolated to this config's token grid (EgoToy clips: more frames than pre-training).
    resized = [name for name, value in backbone.items() if value.shape != stored[name].shape]
    assert resized == ["pos_embed"]
    assert all(torch.equal(value, stored[name]) for name, value in backbone.items() if name not in resized)
    summary = run_test(fewshot)
    assert summary["shot"] == 1 and summary["episodes"] == 4


def test_egotoy_fewshot_preset_uses_the_pretrained_tower():
    presets = {}
    for name in ("EGOTOY_PRETRAIN", "EGOTOY_ZERO_SHOT", "EGOTOY_FEWSHOT"):
        presets[name] = get_cfg()
        presets[name].merge_from_file(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "EgoVLP",
                                                   f"{name}.yaml"))
    pretrain = presets["EGOTOY_PRETRAIN"]
    assert presets["EGOTOY_FEWSHOT"].MODEL.BACKBONE == pretrain.MODEL.BACKBONE
    for name in ("EGOTOY_ZERO_SHOT", "EGOTOY_FEWSHOT"):
        assert presets[name].TEST.CHECKPOINT_FILE_PATH == os.path.join(
            pretrain.OUTPUT_DIR, "checkpoints", f"checkpoint_epoch_{pretrain.SOLVER.MAX_EPOCH:05d}.pyth")


def fewshot_from_pretrain(zero_shot, output_dir: str):
    """configs/EgoVLP/EGOTOY_FEWSHOT.yaml's change of the zero-shot test: a FewShot ProtoNet model whose
    backbone is the pre-trained video tower."""
    cfg = zero_shot.clone()
    preset = get_cfg()
    preset.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "EgoVLP",
                                        "EGOTOY_FEWSHOT.yaml"))
    cfg.MODEL.MODEL_NAME, cfg.HEAD.NAME = preset.MODEL.MODEL_NAME, preset.HEAD.NAME
    cfg.MODEL.BACKBONE = "VideoViT"  # the tower egovlp_cfg trains (the preset's is EGOTOY_PRETRAIN.yaml's)
    cfg.FEW_SHOT.SHOT, cfg.OUTPUT_DIR = 1, output_dir
    return cfg
