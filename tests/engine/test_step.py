"""`run_step`, the one training step: gradient accumulation, the non-finite checks, and that both the
training loop and `tools/benchmark.py train` run it (the benchmark times what training runs)."""
import pytest
import torch
from torch import nn

from ego_fsar.benchmark import train as bench_train
from ego_fsar.config import get_cfg
from ego_fsar.engine import step, trainer
from ego_fsar.utils.amp import amp_policy, make_grad_scaler
from tests.engine.test_train import tiny_train_cfg


class _Protocol:
    """A batch is (inputs [B, 2], labels [B]); the model's output is {"logits": model(inputs)}."""

    @staticmethod
    def forward(model, batch, device, cfg):
        inputs, labels = batch
        return {"logits": model(inputs)}, labels, len(labels)


def _criterion(outputs, labels):
    loss = nn.functional.cross_entropy(outputs["logits"], labels)
    return loss, {"loss_ce": loss.item()}


def _step(model, optimizer, batch, **kwargs):
    cfg = get_cfg()
    policy = amp_policy(cfg, torch.device("cpu"))
    return step.run_step(model, batch, _criterion, optimizer, make_grad_scaler(policy), policy,
                         torch.device("cpu"), _Protocol(), cfg, **kwargs)


def _tiny():
    torch.manual_seed(0)
    model = nn.Linear(2, 3)
    return model, torch.optim.SGD(model.parameters(), lr=0.1), (torch.randn(4, 2), torch.tensor([0, 1, 2, 0]))


def test_accumulation_divides_the_loss_and_steps_only_on_update():
    model, optimizer, batch = _tiny()
    _step(model, optimizer, batch, update=False)
    full = model.weight.grad.clone()
    model.weight.grad = None
    before = model.weight.detach().clone()
    result = _step(model, optimizer, batch, accum=2, update=False)
    assert torch.allclose(model.weight.grad, full / 2) and torch.equal(model.weight, before)
    assert result.batch_size == 4 and set(result.parts) == {"loss_ce"}
    _step(model, optimizer, batch, accum=2)
    assert model.weight.grad is None and not torch.equal(model.weight, before)


def test_non_finite_loss_and_weights_name_epoch_and_iteration():
    model, optimizer, (inputs, labels) = _tiny()
    with pytest.raises(FloatingPointError, match="loss is nan at epoch 3, iteration 5"):
        _step(model, optimizer, (inputs * float("nan"), labels), cur_epoch=2, cur_iter=4)
    optimizer.param_groups[0]["lr"] = float("inf")
    with pytest.raises(FloatingPointError, match="non-finite weights at epoch 1, iteration 2"):
        _step(model, optimizer, (inputs, labels), cur_iter=1)


def test_training_and_the_benchmark_run_the_same_step(cfg, tmp_path, monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("update", True))
        return step.run_step(*args, **kwargs)

    assert trainer.run_step is bench_train.run_step is step.run_step
    monkeypatch.setattr(trainer, "run_step", counted)
    monkeypatch.setattr(bench_train, "run_step", counted)
    cfg = tiny_train_cfg(cfg, tmp_path)
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.EVAL_PERIOD, cfg.TRAIN.MAX_ITERS_PER_EPOCH = 1, 0, 2
    cfg.TRAIN.GRAD_ACCUM_STEPS = 2
    trainer.train(cfg)
    assert calls == [False, True]
    batch, _ = bench_train.SYNTHETIC_BATCHES["supervised"](cfg, 2)
    times, precision = bench_train.step_seconds(cfg, batch, warmup=1, steps=2)
    assert len(times) == 2 and precision == "fp32" and calls == [False, True, True, True, True]


def test_finiteness_is_exact_when_a_sum_overflows():
    huge = torch.full((4,), 3e38)  # finite values whose float32 sum overflows to inf
    assert step._all_finite([huge, torch.ones(3)])
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not step._all_finite([torch.ones(3), torch.tensor([1.0, bad])])
    assert not step._all_finite([torch.tensor([float("inf")]), torch.tensor([-float("inf")])])
    assert step._all_finite([])
