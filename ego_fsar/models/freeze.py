"""Freezing policy from the config, usable by any method.

Parameters are matched by their checkpoint (flat) names, e.g. `blocks.3.attn.qkv.weight` rather
than `backbone.blocks.3...`, with `re.search`:

- a name matched by a MODEL.FREEZE regex is frozen, unless a MODEL.TRAINABLE regex matches it;
- MODEL.TRAINABLE alone freezes every parameter it does not match.

TAMT: `MODEL.TRAINABLE ["\\.tam\\.", "^fc_norm", "^head"]` trains only the adapters and head.
"""
import logging
import re
from typing import List, Sequence, Tuple

from fvcore.common.config import CfgNode
from torch import nn

from .stats import count_parameters

logger = logging.getLogger(__name__)


def _compile(patterns: Sequence[str], key: str) -> List[re.Pattern]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise ValueError(f"{key}: invalid regex {pattern!r}: {err}") from err
    return compiled


def apply_freeze(model: nn.Module, cfg: CfgNode) -> Tuple[int, int]:
    """Set `requires_grad` by MODEL.FREEZE / MODEL.TRAINABLE; log and return (trainable, total)."""
    freeze = _compile(cfg.MODEL.FREEZE, "MODEL.FREEZE")
    keep = _compile(cfg.MODEL.TRAINABLE, "MODEL.TRAINABLE")
    if freeze or keep:
        flat_name = getattr(model, "flat_name", lambda name: name)
        names = [flat_name(name) for name, _ in model.named_parameters()]
        for key, patterns in (("MODEL.FREEZE", freeze), ("MODEL.TRAINABLE", keep)):
            for pattern in patterns:
                if not any(pattern.search(name) for name in names):
                    raise ValueError(f"{key}: pattern {pattern.pattern!r} matches no parameter "
                                     f"(names look like {names[:3]})")
        for name, param in model.named_parameters():
            name = flat_name(name)
            frozen = (not freeze or any(p.search(name) for p in freeze)) and not any(p.search(name) for p in keep)
            param.requires_grad_(not frozen)
    total, trainable = count_parameters(model)
    logger.info("Trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}",
                100.0 * trainable / max(total, 1))
    return trainable, total


def freeze_norm_statistics(model: nn.Module) -> int:
    """Put every normalisation layer whose parameters are all frozen into eval mode, so that its
    running statistics stay as loaded (call after `model.train()`). Returns how many were set."""
    count = 0
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._NormBase) and params and not any(p.requires_grad for p in params):
            module.eval()
            count += 1
    return count
