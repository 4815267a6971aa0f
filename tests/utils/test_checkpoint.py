"""Checkpoint writing, containers, mismatch reports, strictness, precedence and corruption."""
import logging
import os

import pytest
import torch
from torch import nn

from ego_fsar.config import get_cfg
from ego_fsar.models.methods.base import FlatBackboneModel
from ego_fsar.utils import checkpoint as cu


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
        open(f, "wb").write(b"partial")
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
