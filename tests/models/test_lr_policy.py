import math

import pytest

from ego_fsar.config import get_cfg
from ego_fsar.models.lr_policy import get_lr_at_epoch


def _cfg(policy, **solver):
    cfg = get_cfg()
    cfg.SOLVER.LR_POLICY = policy
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MAX_EPOCH = 10
    cfg.SOLVER.WARMUP_EPOCHS = 0.0
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


def test_cosine_without_warmup():
    cfg = _cfg("cosine", COSINE_END_LR=0.01)
    assert get_lr_at_epoch(cfg, 0.0) == pytest.approx(0.1)
    assert get_lr_at_epoch(cfg, 5.0) == pytest.approx(0.055)
    assert get_lr_at_epoch(cfg, 2.5) == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert get_lr_at_epoch(cfg, 10.0) == pytest.approx(0.01)


def test_cosine_with_fractional_warmup_reaches_the_policy_value():
    cfg = _cfg("cosine", WARMUP_EPOCHS=2.5, WARMUP_START_LR=0.001)
    target = 0.05 * (1 + math.cos(math.pi * 2.5 / 10))
    assert get_lr_at_epoch(cfg, 0.0) == pytest.approx(0.001)
    assert get_lr_at_epoch(cfg, 1.25) == pytest.approx((0.001 + target) / 2)
    assert get_lr_at_epoch(cfg, 2.5) == pytest.approx(target)
    assert get_lr_at_epoch(cfg, 5.0) == pytest.approx(0.05)


def test_cosine_after_warmup_starts_at_base_lr():
    cfg = _cfg("cosine", WARMUP_EPOCHS=2.0, WARMUP_START_LR=0.0, COSINE_AFTER_WARMUP=True)
    assert get_lr_at_epoch(cfg, 1.0) == pytest.approx(0.05)
    assert get_lr_at_epoch(cfg, 2.0) == pytest.approx(0.1)
    assert get_lr_at_epoch(cfg, 6.0) == pytest.approx(0.05)
    assert get_lr_at_epoch(cfg, 10.0) == pytest.approx(0.0)


def test_steps_with_relative_lrs():
    cfg = _cfg("steps_with_relative_lrs", STEPS=[0, 4, 8], LRS=[1.0, 0.1, 0.01])
    expected = {0.0: 0.1, 3.99: 0.1, 4.0: 0.01, 7.5: 0.01, 8.0: 0.001, 10.0: 0.001, 12.0: 0.001}
    for epoch, lr in expected.items():
        assert get_lr_at_epoch(cfg, epoch) == pytest.approx(lr), epoch


def test_steps_with_warmup():
    cfg = _cfg("steps_with_relative_lrs", STEPS=[0, 4], LRS=[1.0, 0.1], WARMUP_EPOCHS=1.0, WARMUP_START_LR=0.0)
    assert get_lr_at_epoch(cfg, 0.5) == pytest.approx(0.05)
    assert get_lr_at_epoch(cfg, 1.0) == pytest.approx(0.1)


@pytest.mark.parametrize("steps,lrs", [([4, 8], [1.0, 0.1]), ([0, 4], [1.0]), ([0, 8, 4], [1.0, 0.1, 0.01])])
def test_steps_rejects_malformed_schedules(steps, lrs):
    cfg = _cfg("steps_with_relative_lrs", STEPS=steps, LRS=lrs)
    with pytest.raises(ValueError, match="SOLVER.STEPS"):
        get_lr_at_epoch(cfg, 1.0)


def test_constant_with_warmup():
    cfg = _cfg("constant", WARMUP_EPOCHS=4.0, WARMUP_START_LR=0.02)
    assert get_lr_at_epoch(cfg, 1.0) == pytest.approx(0.04)
    assert get_lr_at_epoch(cfg, 4.0) == pytest.approx(0.1)
    assert get_lr_at_epoch(cfg, 9.0) == pytest.approx(0.1)


def test_unknown_policy_names_key_and_choices():
    with pytest.raises(KeyError, match=r"SOLVER.LR_POLICY 'linear'.*constant.*cosine.*steps_with_relative_lrs"):
        get_lr_at_epoch(_cfg("linear"), 0.0)


def test_warmup_factor_starts_warmup_at_a_fraction_of_base_lr():
    cfg = _cfg("constant", WARMUP_EPOCHS=2.0, WARMUP_START_LR=0.05, WARMUP_FACTOR=0.2)
    assert get_lr_at_epoch(cfg, 0.0) == pytest.approx(0.02)
    assert get_lr_at_epoch(cfg, 1.0) == pytest.approx(0.06)
    assert get_lr_at_epoch(cfg, 2.0) == pytest.approx(0.1)
    cfg.SOLVER.WARMUP_FACTOR = None  # the default: PySlowFast's WARMUP_START_LR
    assert get_lr_at_epoch(cfg, 0.0) == pytest.approx(0.05)
