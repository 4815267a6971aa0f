"""Optimizer construction (PySlowFast's weight-decay groups), learning-rate setting, gradient clipping."""
from typing import Callable, Dict, Iterable, List, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ego_fsar.utils import distributed as du
from ego_fsar.utils.logging import get_logger

logger = get_logger(__name__)

# Normalisation layers whose parameters get BN.WEIGHT_DECAY (BatchNorm*, InstanceNorm*, LayerNorm, GroupNorm).
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _sgd(params: List[Dict], cfg) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=cfg.SOLVER.BASE_LR,
        momentum=cfg.SOLVER.MOMENTUM,
        dampening=cfg.SOLVER.DAMPENING,
        nesterov=cfg.SOLVER.NESTEROV,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
    )


def _adam(params: List[Dict], cfg) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.BETAS), weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )


def _adamw(params: List[Dict], cfg) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.BETAS), eps=1e-8,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
    )


OPTIMIZERS: Dict[str, Callable[[List[Dict], object], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
}


def param_groups(model: nn.Module, cfg: CfgNode) -> List[Dict]:
    """Trainable parameters split by weight decay, PySlowFast's groups (empty groups dropped).

    - parameters of normalisation layers (NORM_TYPES): BN.WEIGHT_DECAY;
    - names listed by the model's `no_weight_decay()` (if it has one), and, with
      SOLVER.ZERO_WD_1D_PARAM, parameters with at most one dimension (biases, scales): 0;
    - the rest: SOLVER.WEIGHT_DECAY.
    Parameters with requires_grad False are left out; each trainable parameter appears once.
    """
    model = du.unwrap(model)
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups = {"bn": [], "decay": [], "zero": []}
    seen = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full_name = f"{module_name}.{name}" if module_name else name
            if isinstance(module, NORM_TYPES):
                groups["bn"].append(p)
            elif full_name in skip or (cfg.SOLVER.ZERO_WD_1D_PARAM and p.ndim <= 1):
                groups["zero"].append(p)
            else:
                groups["decay"].append(p)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert seen == trainable, (
        f"parameter groups hold {len(seen)} parameters, the model has {len(trainable)} trainable"
    )
    logger.info("optimizer groups: bn %d, decay %d, zero-decay %d, frozen %d", len(groups["bn"]),
                len(groups["decay"]), len(groups["zero"]), sum(1 for p in model.parameters() if not p.requires_grad))
    weight_decay = {"bn": cfg.BN.WEIGHT_DECAY, "decay": cfg.SOLVER.WEIGHT_DECAY, "zero": 0.0}
    return [{"params": ps, "weight_decay": weight_decay[k]} for k, ps in groups.items() if ps]


def construct_optimizer(model: nn.Module, cfg: CfgNode) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZING_METHOD ("sgd", "adam", "adamw") over `param_groups(model, cfg)`, lr SOLVER.BASE_LR."""
    method = cfg.SOLVER.OPTIMIZING_METHOD
    if method not in OPTIMIZERS:
        raise KeyError(f"SOLVER.OPTIMIZING_METHOD '{method}' is unknown; valid methods: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[method](param_groups(model, cfg), cfg)


def set_lr(optimizer: torch.optim.Optimizer, new_lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = new_lr


def clip_gradients(params: Iterable[torch.Tensor], cfg: CfgNode) -> Optional[torch.Tensor]:
    """Clip gradients in place by SOLVER.CLIP_GRAD_VAL (each element) or SOLVER.CLIP_GRAD_L2NORM
    (global L2 norm); call it after `GradScaler.unscale_`.

    Returns the global L2 norm of the gradients before clipping, or None when neither key is set.
    """
    clip_val, clip_norm = cfg.SOLVER.CLIP_GRAD_VAL, cfg.SOLVER.CLIP_GRAD_L2NORM
    if clip_val is not None and clip_norm is not None:
        raise ValueError(f"set at most one of SOLVER.CLIP_GRAD_VAL ({clip_val}) and SOLVER.CLIP_GRAD_L2NORM "
                         f"({clip_norm})")
    params = [p for p in params if p.grad is not None]
    if clip_norm is not None:
        return nn.utils.clip_grad_norm_(params, clip_norm)
    if clip_val is not None:
        norm = nn.utils.get_total_norm([p.grad for p in params])
        nn.utils.clip_grad_value_(params, clip_val)
        return norm
    return None
