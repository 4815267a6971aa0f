"""Checkpoint writing, containers, mismatch reports, strictness, precedence and corruption."""
import logging
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from ego_fsar.config import get_cfg
from ego_fsar.models import build_model
from ego_fsar.models.methods.base import FlatBackboneModel
from ego_fsar.utils import checkpoint as cu
from tests.utils.test_checkpoint_formats import vit_cfg


class _Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.s1 = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4)


class _Model(FlatBackboneModel):
    def __init__(self):
        super().__init__(_Backbone())
        self.head = nn.Linear(4, 2)


def _cfg(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.NUM_GPUS = 0
    return cfg


def test_flat_state_dict_names():
    keys = set(_Model().state_dict())
    assert "s1.weight" in keys and "bn.running_var" in keys and "head.weight" in keys
    assert not any(k.startswith("backbone.") for k in keys)
    fresh = _Model()
    fresh.load_state_dict(_Model().state_dict(), strict=True)


def test_save_is_pyslowfast_format_and_atomic(tmp_path):
    cfg = _cfg(tmp_path)
    model = _Model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = cu.save_checkpoint(cfg.OUTPUT_DIR, model, opt, 4, cfg)
    assert path.endswith(os.path.join("checkpoints", "checkpoint_epoch_00005.pyth"))
    ckpt = torch.load(path, weights_only=False)
    assert {"epoch", "model_state", "optimizer_state", "scaler_state", "cfg"} <= set(ckpt)
    assert ckpt["epoch"] == 4
    assert os.listdir(os.path.dirname(path)) == ["checkpoint_epoch_00005.pyth"]  # no temp file left
    assert cu.get_last_checkpoint(cfg.OUTPUT_DIR) == path


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "ck.pyth")
    cu.atomic_torch_save({"a": 1}, path)

    def boom(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        cu.atomic_torch_save({"a": 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["ck.pyth"]


@pytest.mark.parametrize("container", ["model_state", "model", "module", "state_dict", None])
def test_containers_and_module_prefix(tmp_path, container):
    state = {f"module.{k}": v for k, v in _Model().state_dict().items()}
    obj = state if container is None else {container: state}
    path = str(tmp_path / "w.pth")
    torch.save(obj, path)
    model = _Model()
    cu.load_checkpoint(path, model, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[f"module.{k}"])


def test_mismatch_logged_by_name_and_strict_raises(tmp_path, caplog):
    state = _Model().state_dict()
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(1)
    state["s1.weight"] = torch.zeros(9, 3, 1, 1, 1)
    path = str(tmp_path / "w.pyth")
    torch.save({"model_state": state, "epoch": 2}, path)
    with caplog.at_level(logging.WARNING):
        epoch = cu.load_checkpoint(path, _Model())
    assert epoch == 2
    text = caplog.text
    assert "head.bias" in text and "extra.weight" in text and "s1.weight" in text
    with pytest.raises(cu.CheckpointError, match="head.bias"):
        cu.load_checkpoint(path, _Model(), strict=True)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_corrupt_checkpoint_clear_error(tmp_path, content):
    path = tmp_path / "bad.pyth"
    path.write_bytes(content)
    with pytest.raises(cu.CheckpointError, match="bad.pyth"):
        cu.load_checkpoint(str(path), _Model())


def test_missing_checkpoint_clear_error(tmp_path):
    with pytest.raises(cu.CheckpointError, match="not found"):
        cu.load_checkpoint(str(tmp_path / "nope.pyth"), _Model())


def test_optimizer_and_scaler_restored(tmp_path):
    cfg = _cfg(tmp_path)
    model = _Model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model.head(torch.ones(2, 4)).sum()
    loss.backward()
    opt.step()
    scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    cu.save_checkpoint(cfg.OUTPUT_DIR, model, opt, 0, cfg, scaler)
    model2 = _Model()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    scaler2 = torch.amp.GradScaler("cpu", enabled=True, init_scale=1.0)
    start = cu.load_train_checkpoint(cfg, model2, opt2, scaler2)
    assert start == 1
    assert scaler2.get_scale() == 1024.0
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_test_checkpoint_precedence(tmp_path):
    cfg = _cfg(tmp_path)
    a, b = _Model(), _Model()
    torch.save({"model_state": a.state_dict()}, tmp_path / "a.pyth")
    cu.save_checkpoint(cfg.OUTPUT_DIR, b, None, 0, cfg)
    cfg.TRAIN.CHECKPOINT_FILE_PATH = str(tmp_path / "a.pyth")
    target = _Model()
    assert cu.load_test_checkpoint(cfg, target) == cu.get_last_checkpoint(cfg.OUTPUT_DIR)
    assert torch.equal(target.state_dict()["s1.weight"], b.state_dict()["s1.weight"])
    cfg.TEST.CHECKPOINT_FILE_PATH = str(tmp_path / "a.pyth")
    assert cu.load_test_checkpoint(cfg, target) == str(tmp_path / "a.pyth")
    assert torch.equal(target.state_dict()["s1.weight"], a.state_dict()["s1.weight"])


# --------------------------------------------------------------------------------------------- #
# Which checkpoint is tested (best on validation), and how well a checkpoint must fit
# --------------------------------------------------------------------------------------------- #

def _save_best(cfg, model, epoch, metric):
    return cu.save_checkpoint(cfg.OUTPUT_DIR, model, None, epoch, cfg, path=cu.get_best_checkpoint_path(cfg.OUTPUT_DIR),
                              extra={"best_metric": metric})


def test_test_prefers_the_best_checkpoint(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    best, last = _Model(), _Model()
    _save_best(cfg, best, 0, {"name": "top1_err", "value": 12.5})
    for epoch in (0, 1):
        cu.save_checkpoint(cfg.OUTPUT_DIR, last, None, epoch, cfg)
    target = _Model()
    with caplog.at_level(logging.INFO):
        assert cu.load_test_checkpoint(cfg, target) == cu.get_best_checkpoint_path(cfg.OUTPUT_DIR)
    assert torch.equal(target.state_dict()["s1.weight"], best.state_dict()["s1.weight"])
    assert f"Testing {cu.get_best_checkpoint_path(cfg.OUTPUT_DIR)}" in caplog.text
    assert "top1_err = 12.5000 at epoch 1" in caplog.text
    cfg.TEST.USE_BEST_CHECKPOINT = False
    assert cu.load_test_checkpoint(cfg, target) == cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, 2)
    assert torch.equal(target.state_dict()["s1.weight"], last.state_dict()["s1.weight"])


class _Other(nn.Module):
    """Another architecture: one shared key name, others missing or with other shapes."""

    def __init__(self):
        super().__init__()
        self.s1 = nn.Conv3d(3, 8, 1)
        self.extra = nn.Linear(2, 2)


def _write(tmp_path, name, state):
    path = str(tmp_path / name)
    torch.save({"model_state": state, "epoch": 0}, path)
    return path


def test_test_checkpoint_must_fit(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    cfg.TEST.CHECKPOINT_FILE_PATH = _write(tmp_path, "other.pyth", _Other().state_dict())
    with pytest.raises(cu.CheckpointError) as err:
        cu.load_test_checkpoint(cfg, _Model())
    message = str(err.value)
    assert "other.pyth" in message and "TEST.CHECKPOINT_STRICT False" in message
    assert "6 of the model's 9 weights are missing" in message and "bn.bias" in message
    assert "2 have another shape (s1.bias [8] vs model [4], s1.weight [8, 3, 1, 1, 1] vs model" in message
    assert "2 of its keys are not in the model (extra.bias, extra.weight)" in message
    cfg.TEST.CHECKPOINT_STRICT = False
    with caplog.at_level(logging.WARNING):
        cu.load_test_checkpoint(cfg, _Model())
    assert "7 missing keys in" in caplog.text


def test_unexpected_keys_and_bn_counters_do_not_fail(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    source = _Model()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["teacher.weight"] = torch.zeros(3)
    cfg.TEST.CHECKPOINT_FILE_PATH = _write(tmp_path, "w.pyth", state)
    target = _Model()
    with caplog.at_level(logging.WARNING):
        cu.load_test_checkpoint(cfg, target)
    assert torch.equal(target.state_dict()["head.weight"], source.state_dict()["head.weight"])
    assert "1 unexpected keys in" in caplog.text and "teacher.weight" in caplog.text


def test_checkpoint_in_output_dir_must_fit(tmp_path):
    cfg = _cfg(tmp_path)
    cu.save_checkpoint(cfg.OUTPUT_DIR, _Other(), None, 0, cfg)
    with pytest.raises(cu.CheckpointError, match="checkpoint_epoch_00001.pyth does not fit the model"):
        cu.load_test_checkpoint(cfg, _Model())


def test_test_without_the_head_names_it(tmp_path):
    cfg = _cfg(tmp_path)
    state = {k: v for k, v in _Model().state_dict().items() if not k.startswith("head.")}
    cfg.TEST.CHECKPOINT_FILE_PATH = _write(tmp_path, "backbone_only.pyth", state)
    with pytest.raises(cu.CheckpointError, match=r"Only the model's head \(head\.\*\) differs") as err:
        cu.load_test_checkpoint(cfg, _Model())
    assert "TEST.ALLOW_UNTRAINED_HEAD True" in str(err.value)
    cfg.TEST.ALLOW_UNTRAINED_HEAD = True
    assert cu.load_test_checkpoint(cfg, _Model()) == cfg.TEST.CHECKPOINT_FILE_PATH


class _ScaleHead(nn.Module):
    """A few-shot head whose only weight does not change its predictions (like ProtoNet's scale)."""

    PARAMETER_FREE = True

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))


class _FewShot(FlatBackboneModel):
    def __init__(self):
        super().__init__(_Backbone())
        self.head = _ScaleHead()

    @property
    def fewshot_head(self):
        return self.head


def test_parameter_free_fewshot_head_may_be_missing(tmp_path, monkeypatch):
    """A FewShot ProtoNet tested from a classifier's checkpoint (tools/compare_heads.py)."""
    cfg = _cfg(tmp_path)
    cfg.TEST.CHECKPOINT_FILE_PATH = _write(tmp_path, "classifier.pyth", _Model().state_dict())
    assert cu.load_test_checkpoint(cfg, _FewShot()) == cfg.TEST.CHECKPOINT_FILE_PATH
    monkeypatch.setattr(_ScaleHead, "PARAMETER_FREE", False)
    with pytest.raises(cu.CheckpointError, match=r"missing from it \(head.scale\)"):
        cu.load_test_checkpoint(cfg, _FewShot())


def _three_way():
    model = _Model()
    model.head = nn.Linear(4, 3)
    return model


def test_training_init_may_differ_only_in_the_head(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    source = _three_way()
    cfg.TRAIN.CHECKPOINT_FILE_PATH = _write(tmp_path, "k400.pyth", source.state_dict())
    target = _Model()
    head_before = target.head.weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        assert cu.load_train_checkpoint(cfg, target, None) == 1
    assert torch.equal(target.state_dict()["s1.weight"], source.state_dict()["s1.weight"])
    assert torch.equal(target.head.weight, head_before)
    assert "the model's head differs" in caplog.text and "head.weight" in caplog.text
    state = source.state_dict()
    state.pop("bn.weight")
    cfg.TRAIN.CHECKPOINT_FILE_PATH = _write(tmp_path, "partial.pyth", state)
    with pytest.raises(cu.CheckpointError, match="partial.pyth does not fit.*bn.weight.*TRAIN.CHECKPOINT_STRICT False"):
        cu.load_train_checkpoint(cfg, _Model(), None)
    cfg.TRAIN.CHECKPOINT_STRICT = False
    assert cu.load_train_checkpoint(cfg, _Model(), None) == 1


def test_videomae_initialised_from_a_pretraining_checkpoint(tmp_path, caplog):
    """VideoMAE's pre-training checkpoints hold neither `fc_norm` nor `head`: both are its head."""
    cfg = vit_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    encoder = {k: v for k, v in build_model(cfg).state_dict().items() if not k.startswith(("fc_norm.", "head."))}
    cfg.TRAIN.CHECKPOINT_FILE_PATH = _write(tmp_path, "pretrain.pth", encoder)
    with caplog.at_level(logging.WARNING):
        assert cu.load_train_checkpoint(cfg, build_model(cfg), None) == 1
    assert "fc_norm.bias" in caplog.text and "keep their initialisation" in caplog.text
    encoder.pop("blocks.0.norm1.weight")
    cfg.TRAIN.CHECKPOINT_FILE_PATH = _write(tmp_path, "pretrain.pth", encoder)
    with pytest.raises(cu.CheckpointError, match=r"1 of the model's \d+ weights are missing from it "
                                                 r"\(blocks.0.norm1.weight\)"):
        cu.load_train_checkpoint(cfg, build_model(cfg), None)


def test_resume_needs_every_weight_including_the_head(tmp_path):
    cfg = _cfg(tmp_path)
    cu.save_checkpoint(cfg.OUTPUT_DIR, _three_way(), None, 0, cfg)
    with pytest.raises(cu.CheckpointError, match="checkpoint_epoch_00001.pyth does not fit.*head.weight"):
        cu.load_train_checkpoint(cfg, _Model(), None)


# --------------------------------------------------------------------------------------------- #
# Non-finite tensors are never written nor loaded
# --------------------------------------------------------------------------------------------- #

def _poisoned():
    model = _Model()
    with torch.no_grad():
        model.backbone.s1.weight[0, 0] = float("nan")
        model.head.bias[1] = float("inf")
    return model


def test_save_refuses_non_finite_tensors(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(cu.CheckpointError, match=r"not writing .*checkpoint_epoch_00001.pyth.*2 tensors: "
                                                 r"model_state.s1.weight, model_state.head.bias"):
        cu.save_checkpoint(cfg.OUTPUT_DIR, _poisoned(), None, 0, cfg)
    model = _Model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.head(torch.full((1, 4), float("nan"))).sum().backward()
    opt.step()
    with torch.no_grad():
        model.head.weight.copy_(torch.zeros(2, 4))
        model.head.bias.zero_()
    with pytest.raises(cu.CheckpointError, match=r"optimizer_state.state.\d.momentum_buffer"):
        cu.save_checkpoint(cfg.OUTPUT_DIR, model, opt, 0, cfg)
    assert cu.list_checkpoints(cfg.OUTPUT_DIR) == []


def test_test_and_resume_refuse_non_finite_weights(tmp_path):
    cfg = _cfg(tmp_path)
    os.makedirs(cu.get_checkpoint_dir(cfg.OUTPUT_DIR))
    path = cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, 1)
    torch.save({"model_state": _poisoned().state_dict(), "epoch": 0}, path)
    for load in (lambda: cu.load_test_checkpoint(cfg, _Model()), lambda: cu.load_train_checkpoint(cfg, _Model(), None)):
        with pytest.raises(cu.CheckpointError, match=r"refusing to load .*checkpoint_epoch_00001.pyth: 2 weights "
                                                     r"hold non-finite values \(NaN/inf\): s1.weight, head.bias"):
            load()


# --------------------------------------------------------------------------------------------- #
# Per-process RNG states
# --------------------------------------------------------------------------------------------- #

def test_rng_states_by_rank():
    states = [{"torch": torch.tensor([r])} for r in range(2)]
    assert cu.rng_state_for_rank({"rng_states": states}, 1) is states[1]
    assert cu.rng_state_for_rank({"rng_states": states}, 2) is None  # more processes than saved
    old = {"rng_state": states[0]}  # ego_fsar 0.1: rank 0's state only
    assert cu.rng_state_for_rank(old, 0) is states[0] and cu.rng_state_for_rank(old, 1) is None


def test_save_stores_this_process_rng_and_resume_restores_it(tmp_path):
    cfg = _cfg(tmp_path)
    torch.manual_seed(3)
    cu.save_checkpoint(cfg.OUTPUT_DIR, _Model(), None, 0, cfg)
    expected = torch.rand(4)
    ckpt = torch.load(cu.get_last_checkpoint(cfg.OUTPUT_DIR), weights_only=False)
    assert len(ckpt["rng_states"]) == 1 and "cuda" not in ckpt["rng_states"][0]
    torch.manual_seed(0)
    cu.load_train_checkpoint(cfg, _Model(), None)
    assert torch.equal(torch.rand(4), expected)


# --------------------------------------------------------------------------------------------- #
# Corrupt checkpoints and temporary files of killed saves
# --------------------------------------------------------------------------------------------- #

def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def test_auto_resume_skips_a_corrupt_latest_checkpoint(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    first = _Model()
    cu.save_checkpoint(cfg.OUTPUT_DIR, first, None, 0, cfg)
    cu.save_checkpoint(cfg.OUTPUT_DIR, _Model(), None, 1, cfg)
    corrupt = cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, 2)
    _truncate(corrupt)
    target = _Model()
    with caplog.at_level(logging.WARNING):
        assert cu.load_train_checkpoint(cfg, target, None) == 1
    assert torch.equal(target.state_dict()["s1.weight"], first.state_dict()["s1.weight"])
    assert f"Auto-resume skips {corrupt}" in caplog.text
    assert os.path.isfile(corrupt)
    _truncate(cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, 1))
    with pytest.raises(cu.CheckpointError, match="none of the 2 checkpoints"):
        cu.load_train_checkpoint(cfg, _Model(), None)


@pytest.mark.parametrize("cut", ["half", "tail"])
def test_corrupt_best_checkpoint(tmp_path, caplog, cut):
    cfg = _cfg(tmp_path)
    path = _save_best(cfg, _Model(), 0, {"name": "top1_err", "value": 10.0})
    assert cu.read_best_metric(path) == {"name": "top1_err", "value": 10.0}
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2] if cut == "half" else data[:-10])
    with caplog.at_level(logging.WARNING):
        assert cu.read_best_metric(path) is None
    assert "checkpoint_best.pyth" in caplog.text
    with pytest.raises(cu.CheckpointError, match="cannot read checkpoint .*checkpoint_best.pyth"):
        cu.load_test_checkpoint(cfg, _Model())


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("when", ["save", "resume"])
def test_temp_files_of_killed_saves_are_removed(tmp_path, when):
    cfg = _cfg(tmp_path)
    cu.save_checkpoint(cfg.OUTPUT_DIR, _Model(), None, 0, cfg)
    folder = cu.get_checkpoint_dir(cfg.OUTPUT_DIR)
    dead = os.path.join(folder, f"checkpoint_epoch_00002.pyth.tmp.{_dead_pid()}")
    alive = os.path.join(folder, f"checkpoint_epoch_00002.pyth.tmp.{os.getppid()}")
    for path in (dead, alive):
        open(path, "wb").write(b"partial")
    if when == "save":
        cu.save_checkpoint(cfg.OUTPUT_DIR, _Model(), None, 1, cfg)
    else:
        assert cu.load_train_checkpoint(cfg, _Model(), None) == 1
    assert not os.path.exists(dead) and os.path.exists(alive)
