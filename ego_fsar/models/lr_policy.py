"""Learning-rate policies (PySlowFast's SOLVER.LR_POLICY semantics), evaluated at fractional epochs."""
import math
from typing import Callable, Dict

from fvcore.common.config import CfgNode

LrPolicy = Callable[[object, float], float]


def lr_func_cosine(cfg: CfgNode, cur_epoch: float) -> float:
    """Half cosine from SOLVER.BASE_LR to SOLVER.COSINE_END_LR at SOLVER.MAX_EPOCH.

    With SOLVER.COSINE_AFTER_WARMUP the cosine starts at SOLVER.WARMUP_EPOCHS instead of 0.
    """
    offset = cfg.SOLVER.WARMUP_EPOCHS if cfg.SOLVER.COSINE_AFTER_WARMUP else 0.0
    progress = (cur_epoch - offset) / (cfg.SOLVER.MAX_EPOCH - offset)
    end_lr = cfg.SOLVER.COSINE_END_LR
    return end_lr + (cfg.SOLVER.BASE_LR - end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def get_step_index(cfg: CfgNode, cur_epoch: float) -> int:
    """Index of the SOLVER.STEPS interval holding `cur_epoch` (the last one from its start onwards).

    SOLVER.STEPS lists the start epoch of each interval: it begins with 0, increases, and pairs
    one-to-one with SOLVER.LRS; SOLVER.MAX_EPOCH closes the last interval.
    """
    steps, lrs = list(cfg.SOLVER.STEPS), list(cfg.SOLVER.LRS)
    if not steps or steps[0] != 0 or len(steps) != len(lrs) or sorted(steps) != steps:
        raise ValueError(
            f"steps_with_relative_lrs needs SOLVER.STEPS to start at 0, increase and match SOLVER.LRS in "
            f"length; got STEPS={steps}, LRS={lrs}"
        )
    return sum(1 for step in steps[1:] if cur_epoch >= step)


def lr_func_steps_with_relative_lrs(cfg: CfgNode, cur_epoch: float) -> float:
    """SOLVER.LRS[i] * SOLVER.BASE_LR in the i-th interval of SOLVER.STEPS."""
    return cfg.SOLVER.LRS[get_step_index(cfg, cur_epoch)] * cfg.SOLVER.BASE_LR


def lr_func_constant(cfg: CfgNode, cur_epoch: float) -> float:
    """SOLVER.BASE_LR throughout."""
    return cfg.SOLVER.BASE_LR


LR_POLICIES: Dict[str, LrPolicy] = {
    "cosine": lr_func_cosine,
    "steps_with_relative_lrs": lr_func_steps_with_relative_lrs,
    "constant": lr_func_constant,
}


def get_lr_func(lr_policy: str) -> LrPolicy:
    """The policy function registered in LR_POLICIES under `lr_policy`."""
    if lr_policy not in LR_POLICIES:
        raise KeyError(f"SOLVER.LR_POLICY '{lr_policy}' is unknown; valid policies: {sorted(LR_POLICIES)}")
    return LR_POLICIES[lr_policy]


def get_warmup_start_lr(cfg: CfgNode) -> float:
    """SOLVER.BASE_LR * SOLVER.WARMUP_FACTOR when the factor is set, else SOLVER.WARMUP_START_LR."""
    factor = cfg.SOLVER.WARMUP_FACTOR
    return cfg.SOLVER.WARMUP_START_LR if factor is None else cfg.SOLVER.BASE_LR * factor


def get_lr_at_epoch(cfg: CfgNode, cur_epoch: float) -> float:
    """Learning rate at (fractional) epoch `cur_epoch` under SOLVER.LR_POLICY.

    Before SOLVER.WARMUP_EPOCHS the rate rises linearly from `get_warmup_start_lr(cfg)` to the
    policy's value at SOLVER.WARMUP_EPOCHS (PySlowFast's warm-up).
    """
    policy = get_lr_func(cfg.SOLVER.LR_POLICY)
    warmup = cfg.SOLVER.WARMUP_EPOCHS
    if cur_epoch < warmup:
        start = get_warmup_start_lr(cfg)
        return start + (policy(cfg, warmup) - start) * cur_epoch / warmup
    return policy(cfg, cur_epoch)
