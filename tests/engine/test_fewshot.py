"""Episodic engine on a tiny EgoToy: cache vs no cache, frozen episodes, distributed equality,
episodic (meta-)training, a falling loss for every trainable few-shot head, untrained heads refused,
and the episodic test of a meta-trained model."""
import glob
import json
import logging
import os

import pytest
import torch

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import EpisodeDataset, EpisodeSampler, episodes_for_cfg
from ego_fsar.engine import fewshot_test, head_selection, trainer
from ego_fsar.engine.episode_runner import run_episodes
from ego_fsar.engine.fewshot_test import EPISODES_JSON, episodic_test
from ego_fsar.engine.head_selection import fewshot_parts
from ego_fsar.engine.protocols import EpisodicProtocol
from ego_fsar.engine.tester import test as run_test
from ego_fsar.models import build_model
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils.env import seed_everything
from ego_fsar.utils.launch import launch_job
from tests.engine.test_train import tiny_train_cfg


def fewshot_cfg(cfg, out_dir, head="ProtoNet"):
    """FewShot model: tiny Slow backbone + `head`, 2-way 1-shot 2-query on the tiny EgoToy test split."""
    cfg = tiny_train_cfg(cfg, out_dir)
    cfg.MODEL.MODEL_NAME = "FewShot"
    cfg.MODEL.BACKBONE = "ResNet"
    cfg.HEAD.NAME = head
    cfg.HEAD.METRIC = "euclidean"
    cfg.TEST.PROTOCOL = "episodic"
    return cfg


def vit_fewshot_cfg(cfg, out_dir, head):
    """FewShot model on a 3-block ViT returning all three token maps (EMP-Net, TAMT)."""
    cfg = fewshot_cfg(cfg, out_dir, head)
    cfg.MODEL.BACKBONE = "VideoViT"
    cfg.MODEL.ARCH = "vit"
    cfg.DATA.INPUT_CHANNEL_NUM = [3]
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 32], 32, 32
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = 32, 3, 2, 8
    cfg.VIT.HIDDEN_LAYERS = [0, 1, 2]
    cfg.HEAD.TAMT_NUM_FRAMES, cfg.HEAD.TAMT_GROUPS, cfg.HEAD.TAMT_REDUCE_DIMS = 2, 2, [16, 8]
    cfg.HEAD.OTAM_LAMBDA = 0.5
    return cfg


def _model_and_dataset(cfg):
    seed_everything(0)
    model = build_model(cfg)
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    return model, dataset


@pytest.mark.parametrize("head", ["ProtoNet", "OTAM"])
def test_feature_cache_gives_identical_accuracy(cfg, tmp_path, head):
    cfg = fewshot_cfg(cfg, tmp_path, head)
    model, dataset = _model_and_dataset(cfg)
    backbone, fs_head = fewshot_parts(model, cfg)
    episodes = episodes_for_cfg(cfg, dataset.labels)
    cached = {}
    for size in (1, 3, 256):  # one call per episode, batches of 3 (the last one shorter), all in one batch
        cfg.FEW_SHOT.USE_FEATURE_CACHE, cfg.FEW_SHOT.EPISODE_BATCH = True, size
        cached[size] = run_episodes(backbone, fs_head, dataset, episodes, cfg)
    cfg.FEW_SHOT.USE_FEATURE_CACHE = False
    direct = run_episodes(backbone, fs_head, dataset, episodes, cfg)
    assert cached[1] == cached[3] == cached[256] == direct and len(direct) == cfg.FEW_SHOT.TEST_EPISODES


def test_frozen_episodes_shared_by_two_heads(cfg, tmp_path):
    first = fewshot_cfg(cfg.clone(), tmp_path / "protonet")
    first.FEW_SHOT.EPISODES_FILE = str(tmp_path / "episodes.json")
    model, _ = _model_and_dataset(first)
    episodic_test(first, model)
    assert os.path.isfile(first.FEW_SHOT.EPISODES_FILE)
    second = fewshot_cfg(cfg.clone(), tmp_path / "otam", "OTAM")
    second.FEW_SHOT.EPISODES_FILE = first.FEW_SHOT.EPISODES_FILE
    second.FEW_SHOT.SEED = 123  # ignored: the file decides
    model, _ = _model_and_dataset(second)
    episodic_test(second, model)
    runs = [json.load(open(tmp_path / name / EPISODES_JSON)) for name in ("protonet", "otam")]
    assert [e["class_ids"] for e in runs[0]["episodes"]] == [e["class_ids"] for e in runs[1]["episodes"]]


def episodic_test_and_dump(cfg):
    """Build the FewShot model (seeded) and run the episodic test; the master writes the summary."""
    from ego_fsar.utils import distributed as du

    seed_everything(0)
    summary = episodic_test(cfg, build_model(cfg))
    if du.is_master_proc():
        json.dump(summary, open(os.path.join(cfg.OUTPUT_DIR, "summary.json"), "w"))


def test_distributed_episodic_test_equals_single_process(cfg, tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    single = fewshot_cfg(cfg.clone(), tmp_path / "single")
    single.FEW_SHOT.TEST_EPISODES = 7
    os.makedirs(single.OUTPUT_DIR)
    episodic_test_and_dump(single)
    double = single.clone()
    double.OUTPUT_DIR = str(tmp_path / "double")
    double.NUM_CPU_PROCS = 2
    os.makedirs(double.OUTPUT_DIR)
    launch_job(double, episodic_test_and_dump)
    a, b = (json.load(open(tmp_path / d / "summary.json")) for d in ("single", "double"))
    assert a == b
    per_a, per_b = (json.load(open(tmp_path / d / EPISODES_JSON))["episodes"] for d in ("single", "double"))
    assert per_a == per_b


def test_episodic_training_writes_best_on_val(cfg, tmp_path):
    cfg = fewshot_cfg(cfg, tmp_path)
    cfg.HEAD.METRIC = "cosine"
    cfg.TRAIN.PROTOCOL = "episodic"
    cfg.DATA.VAL_SPLIT = "fewshot_val"
    cfg.FEW_SHOT.TRAIN_EPISODES, cfg.FEW_SHOT.VAL_EPISODES = 3, 2
    cfg.SOLVER.MAX_EPOCH = 2
    trainer.train(cfg)
    stats = [json.loads(line) for line in open(tmp_path / "json_stats.log")]
    assert sum(s["_type"] == "train_iter" for s in stats) == 6
    assert sum(s["_type"] == "val_epoch" for s in stats) == 2
    assert os.path.isfile(tmp_path / "checkpoints" / "checkpoint_best.pyth")


def _episode(cfg, split="train"):
    dataset = build_dataset(cfg.TRAIN.DATASET, cfg, split)
    sampler = EpisodeSampler(dataset.labels, cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, 0)
    return EpisodeDataset(dataset, sampler, 1)[0]


@pytest.mark.parametrize("head", ["ProtoNet", "OTAM", "TRX", "TAMT", "EMPNet"])
def test_head_training_loss_falls_on_egotoy(cfg, tmp_path, head):
    """Fit one EgoToy training episode: the episode loss must fall (backbone and head both learn)."""
    cfg = (vit_fewshot_cfg if head in ("TAMT", "EMPNet") else fewshot_cfg)(cfg, tmp_path, head)
    cfg.HEAD.METRIC = "cosine"
    cfg.HEAD.TRX_DIM = 32
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY = 2, 2, 2
    seed_everything(0)
    model = build_model(cfg)
    model.train()
    batch = _episode(cfg)
    criterion = trainer.build_loss(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        outputs, labels, _ = EpisodicProtocol.forward(model, batch, torch.device("cpu"), cfg)
        loss, _ = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


def test_multiview_test_of_a_fewshot_model_is_refused(cfg, tmp_path):
    cfg = fewshot_cfg(cfg, tmp_path)
    cfg.TEST.PROTOCOL = "multiview"
    with pytest.raises(ValueError, match="TEST.PROTOCOL episodic"):
        run_test(cfg)


def classifier_cfg(cfg, out_dir, head):
    """`head` on the tiny Slow ResNet classifier (MODEL_NAME ResNet: no few-shot head of its own)."""
    cfg = fewshot_cfg(cfg, out_dir, head)
    cfg.MODEL.MODEL_NAME = "ResNet"
    cfg.HEAD.TRX_DIM = 16
    return cfg


def test_untrained_head_with_parameters_is_refused_on_a_classifier(cfg, tmp_path):
    cfg = classifier_cfg(cfg, tmp_path, "TRX")
    model, _ = _model_and_dataset(cfg)
    count = sum(p.numel() for p in head_selection.build_head(cfg, in_dim=model.backbone.out_dim).parameters())
    with pytest.raises(ValueError, match=rf"HEAD.NAME TRX: .*has {count:,} trainable parameters that no checkpoint "
                                         r"trained .*TRAIN.PROTOCOL episodic.*TEST.ALLOW_UNTRAINED_HEAD True"):
        episodic_test(cfg, model)
    assert not os.path.exists(tmp_path / EPISODES_JSON)


def test_untrained_head_allowed_runs_with_a_warning(cfg, tmp_path, caplog):
    cfg = classifier_cfg(cfg, tmp_path, "TRX")
    cfg.TEST.ALLOW_UNTRAINED_HEAD = True
    model, _ = _model_and_dataset(cfg)
    with caplog.at_level(logging.WARNING):
        summary = episodic_test(cfg, model)
    assert summary["episodes"] == cfg.FEW_SHOT.TEST_EPISODES
    assert any("HEAD.NAME TRX" in r.getMessage() and "random weights" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("head", ["ProtoNet", "OTAM", "LogReg"])
def test_parameter_free_heads_run_on_a_classifier(cfg, tmp_path, caplog, head):
    cfg = classifier_cfg(cfg, tmp_path, head)
    cfg.HEAD.METRIC = "cosine"  # ProtoNet's learnable (prediction-neutral) scale
    model, _ = _model_and_dataset(cfg)
    with caplog.at_level(logging.WARNING):
        assert episodic_test(cfg, model)["episodes"] == cfg.FEW_SHOT.TEST_EPISODES
    assert not any("no checkpoint trained" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("head, refused", [("TRX", True), ("ProtoNet", False)])
def test_fewshot_model_whose_checkpoint_lacks_the_head(cfg, tmp_path, head, refused):
    """A FewShot model initialised from a classifier's checkpoint has no trained head either."""
    classifier = build_model(classifier_cfg(cfg.clone(), tmp_path, head))
    path = str(tmp_path / "classifier.pyth")
    torch.save({"model_state": classifier.state_dict()}, path)
    cfg = fewshot_cfg(cfg, tmp_path, head)
    cfg.HEAD.METRIC, cfg.HEAD.TRX_DIM = "cosine", 16
    model = build_model(cfg)
    cu.load_checkpoint(path, model)
    if refused:
        with pytest.raises(ValueError, match=r"HEAD.NAME TRX: .*the checkpoint loaded lacks \d+ of its weights: "
                                             r"head\."):
            fewshot_parts(model, cfg)
    else:
        assert fewshot_parts(model, cfg)[1] is model.head


def test_episodic_test_of_a_meta_trained_model(cfg, tmp_path, monkeypatch):
    """Meta-train TRX for one tiny epoch, then test through the public entry: the head it tests holds
    the checkpoint's (trained, not initial) weights, and the accuracy record is written."""
    cfg = fewshot_cfg(cfg, tmp_path, "TRX")
    cfg.HEAD.TRX_DIM = 16
    cfg.TRAIN.PROTOCOL = "episodic"
    cfg.DATA.VAL_SPLIT = "fewshot_val"
    cfg.FEW_SHOT.TRAIN_EPISODES, cfg.FEW_SHOT.VAL_EPISODES = 3, 2
    cfg.SOLVER.MAX_EPOCH = 1
    trainer.train(cfg)
    seed_everything(cfg.RNG_SEED)
    initial = build_model(cfg).head.state_dict()

    tested = []

    def spy(model, cfg):
        parts = fewshot_parts(model, cfg)
        tested.append({k: v.detach().clone() for k, v in parts[1].state_dict().items()})
        return parts

    monkeypatch.setattr(fewshot_test, "fewshot_parts", spy)
    summary = run_test(cfg)
    assert len(tested) == 1
    checkpoints = glob.glob(str(tmp_path / "checkpoints" / "*.pyth"))
    assert checkpoints  # one epoch: the epoch's and the best-on-val checkpoint hold the same weights
    for path in checkpoints:
        saved = torch.load(path, map_location="cpu", weights_only=False)["model_state"]
        head = {k[len("head."):]: v for k, v in saved.items() if k.startswith("head.")}
        assert sorted(head) == sorted(tested[0])
        for name, value in tested[0].items():
            torch.testing.assert_close(value, head[name], rtol=0, atol=0, msg=f"{name} of {path}")
    assert any(not torch.equal(initial[k], tested[0][k]) for k in initial)  # trained, not the initial weights
    records = [json.loads(line) for line in open(tmp_path / "json_stats.log")]
    record = [r for r in records if r["_type"] == "fewshot_test"][-1]
    assert record["episodes"] == summary["episodes"] == cfg.FEW_SHOT.TEST_EPISODES
    assert record["acc"] == pytest.approx(summary["acc"], abs=1e-5) and 0 <= summary["acc"] <= 100
    assert len(json.load(open(tmp_path / EPISODES_JSON))["episodes"]) == cfg.FEW_SHOT.TEST_EPISODES
