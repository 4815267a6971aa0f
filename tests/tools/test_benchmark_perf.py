"""Throughput tooling: `train --compare-pyslowfast` (its skip message, and its comparison logic run on
ego_fsar's own SlowFast against itself, so no PySlowFast checkout is needed), the data-time line, the
one-pass non-finite check of `run_step`, MODEL.COMPILE and the loader keys. Speeds are never checked."""
import logging

import pytest
import torch
from torch import nn

from ego_fsar.benchmark import pyslowfast
from ego_fsar.benchmark.train import _supervised_batch
from ego_fsar.config import get_cfg
from ego_fsar.datasets import loader
from ego_fsar.engine import step, trainer
from ego_fsar.models import build_model
from ego_fsar.utils.amp import amp_policy, make_grad_scaler
from tests.engine.test_step import _Protocol, _criterion, _step, _tiny
from tests.engine.test_train import tiny_train_cfg
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

benchmark = load_tool("benchmark")


def test_train_prints_data_time_and_skips_an_absent_checkout(egotoy_root, tmp_path):
    cfg_file = write_cfg(tiny_cfg(egotoy_root, str(tmp_path / "out")), tmp_path / "tiny.yaml")
    absent = str(tmp_path / "no-checkout")
    text = benchmark.main(["train", "--cfg", cfg_file, "--batch-size", "2", "--steps", "1", "--warmup", "0",
                           "--amp", "no", "--data-batches", "1", "--compare-pyslowfast", absent,
                           "DATA_LOADER.NUM_WORKERS", "0"])
    assert f"--compare-pyslowfast {absent}: skipped, not a PySlowFast checkout" in text
    data = next(line for line in text.splitlines() if line.startswith("data time ("))
    assert "DATA_LOADER.NUM_WORKERS 0" in data and "of the step (" in data


def _tiny_slowfast(cfg, tmp_path):
    cfg = tiny_train_cfg(cfg, tmp_path, arch="slowfast")
    cfg.DATA.TRAIN_CROP_SIZE, cfg.TRAIN.BATCH_SIZE, cfg.MODEL.DROPOUT_RATE = 32, 2, 0.0
    cfg.TRAIN.EVAL_PERIOD = 0
    return cfg


def _as_pyslowfast(model: nn.Module) -> nn.Module:
    """Our model with PySlowFast's output convention: a logits tensor, softmax-ed in eval mode."""
    forward = model.forward

    def logits_or_probabilities(inputs):
        logits = forward(inputs)["logits"]
        return logits if model.training else logits.softmax(-1)

    model.forward = logits_or_probabilities
    return model


def test_compare_models_runs_ours_against_ours(cfg, tmp_path):
    cfg = _tiny_slowfast(cfg, tmp_path)
    batch, _ = _supervised_batch(cfg, 2)

    def reference():
        torch.manual_seed(1)  # other weights than ours: the comparison must copy them
        return _as_pyslowfast(build_model(cfg)), lambda m: torch.optim.SGD(m.parameters(), lr=0.01)

    rows, diff = pyslowfast.compare_models(cfg, batch, reference, repeats=1, warmup=0)
    assert [(r["layout"], r["mode"]) for r in rows] == [
        ("default", "train step"), ("default", "inference"),
        ("channels-last 3d", "train step"), ("channels-last 3d", "inference")]
    assert all(float(r["ours / reference"].rstrip("x")) > 0 for r in rows)
    assert diff < 1e-4


def test_different_networks_are_refused(cfg, tmp_path):
    cfg = _tiny_slowfast(cfg, tmp_path)
    inputs = _supervised_batch(cfg, 2)[0]["inputs"]
    torch.manual_seed(0)
    ours, other = build_model(cfg), _as_pyslowfast(build_model(cfg))
    pyslowfast.randomize_norms(other)
    with pytest.raises(AssertionError, match="not the same network"):
        pyslowfast.assert_same_outputs(ours, other, inputs)
    pyslowfast.copy_weights(other, ours)
    pyslowfast.assert_same_outputs(ours, other, inputs)
    cfg.RESNET.DEPTH = 50
    with pytest.raises(ValueError, match="the two SlowFast models differ"):
        pyslowfast.copy_weights(other, build_model(cfg))


def test_interleaved_medians_alternate_the_variants():
    calls = []
    times = pyslowfast.interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                           repeats=2, warmup=1)
    assert calls == ["a", "b"] * 3 and [len(t) for t in times.values()] == [2, 2]
    rows = pyslowfast.ratio_rows({("default", "train step", "ours"): [1.0, 3.0],
                                  ("default", "train step", "reference"): [2.0, 2.0]})
    assert rows[0]["ours / reference"] == "1.000x" and rows[0]["ours min / ref min"] == "0.500x"


def test_a_finite_step_reads_the_weights_once(monkeypatch):
    """The step checked gradients and weights (two max-abs norm passes over the model) on every step; now
    one finiteness check of the weights, by sums (the norm only when a sum is not finite)."""
    checks, norms = [], []
    check, norm = step._all_finite, nn.utils.get_total_norm
    monkeypatch.setattr(step, "_all_finite", lambda tensors: checks.append(len(tensors)) or check(tensors))
    monkeypatch.setattr(step.nn.utils, "get_total_norm", lambda *a, **k: norms.append(1) or norm(*a, **k))
    model, optimizer, batch = _tiny()
    _step(model, optimizer, batch)
    assert checks == [len(list(model.parameters()))] and not norms


@pytest.mark.parametrize("clip_val", [None, 1.0])
def test_non_finite_gradients_are_named_also_when_clamped(clip_val):
    """A clamped inf gradient is finite by the time the weights are checked: it is checked before."""
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRAD_VAL = clip_val
    policy = amp_policy(cfg, torch.device("cpu"))
    model, optimizer, batch = _tiny()
    model.weight.register_hook(lambda grad: grad * float("inf"))
    with pytest.raises(FloatingPointError, match="non-finite gradients at epoch 1, iteration 1"):
        step.run_step(model, batch, _criterion, optimizer, make_grad_scaler(policy), policy, torch.device("cpu"),
                      _Protocol(), cfg)


def test_compile_keeps_checkpoint_keys(cfg, tmp_path):
    cfg = _tiny_slowfast(cfg, tmp_path)
    keys = list(build_model(cfg).state_dict())
    cfg.MODEL.COMPILE = True
    model = trainer.build_train_model(cfg)[0]
    assert model._compiled_call_impl is not None and list(model.state_dict()) == keys


def test_loader_keys_reach_the_data_loader(cfg):
    cfg.DATA_LOADER.NUM_WORKERS, cfg.DATA_LOADER.PREFETCH_FACTOR = 1, 3
    cfg.DATA_LOADER.PERSISTENT_WORKERS = True
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY = 2, 1, 1
    clips = loader.construct_loader(cfg, cfg.DATA.TRAIN_SPLIT)
    assert clips.prefetch_factor == 3 and clips.persistent_workers
    episodes = loader.construct_episode_loader(cfg, cfg.DATA.TRAIN_SPLIT, num_episodes=2)
    assert episodes.prefetch_factor == 3 and not episodes.persistent_workers
    cfg.DATA_LOADER.NUM_WORKERS = 0
    assert loader.construct_loader(cfg, cfg.DATA.TRAIN_SPLIT).prefetch_factor is None


def test_data_bound_warning(cfg, caplog):
    with caplog.at_level(logging.WARNING):
        assert not trainer.warn_if_data_bound({"dt_data": 0.1, "dt_net": 1.0}, cfg)
        assert not caplog.records
        assert trainer.warn_if_data_bound({"dt_data": 0.3, "dt_net": 1.0}, cfg)
    assert "more than a fifth" in caplog.text and "DATA_LOADER.NUM_WORKERS" in caplog.text
