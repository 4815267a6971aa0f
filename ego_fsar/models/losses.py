"""Loss functions (PySlowFast's names) and the criterion that combines a model's losses.

`LOSS_REGISTRY` holds the classification losses, each registered as a builder
`fn(cfg) -> Callable[[scores, labels], scalar]` (mean over the batch). `build_loss(cfg)` wraps
`MODEL.LOSS_FUNC` in a `Criterion` that also adds the auxiliary losses a model returns.
"""
import math
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.registry import Registry

from ego_fsar.utils.logging import get_logger
from ego_fsar.utils.metrics import Labels, task_pairs

logger = get_logger(__name__)

LOSS_REGISTRY = Registry("LOSS")
LOSS_REGISTRY.__doc__ = """Classification losses, built as `fn(cfg)`; the result maps
(scores [B, C], labels) to the batch-mean loss."""

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Prefix of the model output entries that are auxiliary losses (e.g. "loss_distill").
AUX_PREFIX = "loss_"
# Name of the classification part in LOSS.WEIGHTS and in the logged parts ("loss_cls").
CLS_PART = "cls"


@LOSS_REGISTRY.register()
def cross_entropy(cfg) -> LossFn:
    """Softmax cross-entropy on class indices [B], with LOSS.LABEL_SMOOTHING."""
    smoothing = cfg.LOSS.LABEL_SMOOTHING
    return lambda scores, labels: F.cross_entropy(scores, labels, label_smoothing=smoothing)


@LOSS_REGISTRY.register()
def soft_cross_entropy(cfg) -> LossFn:
    """Cross-entropy with soft targets [B, C] (rows are distributions), with LOSS.LABEL_SMOOTHING."""
    smoothing = cfg.LOSS.LABEL_SMOOTHING

    def loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.shape != scores.shape:
            raise ValueError(f"soft_cross_entropy needs targets shaped like scores {tuple(scores.shape)}, "
                             f"got {tuple(targets.shape)}")
        return F.cross_entropy(scores, targets.to(scores.dtype), label_smoothing=smoothing)

    return loss


def _binary(cfg, fn: LossFn, name: str) -> LossFn:
    if cfg.LOSS.LABEL_SMOOTHING:
        raise ValueError(f"LOSS.LABEL_SMOOTHING ({cfg.LOSS.LABEL_SMOOTHING}) is not supported by "
                         f"MODEL.LOSS_FUNC '{name}'")
    return lambda scores, labels: fn(scores, labels.to(scores.dtype))


@LOSS_REGISTRY.register()
def bce(cfg) -> LossFn:
    """Binary cross-entropy on probabilities [B, C] against multi-hot labels [B, C]."""
    return _binary(cfg, F.binary_cross_entropy, "bce")


@LOSS_REGISTRY.register()
def bce_logit(cfg) -> LossFn:
    """Binary cross-entropy on logits [B, C] against multi-hot labels [B, C]."""
    return _binary(cfg, F.binary_cross_entropy_with_logits, "bce_logit")


class Criterion:
    """The training loss of any model: classification loss plus weighted auxiliary losses.

    `criterion(outputs, labels) -> (loss, parts)`:
      - dict labels (`{"verb": [B], "noun": [B]}`): LOSS_FUNC(outputs[key], labels[key]) summed
        over keys (parts `loss_cls_<key>` and their sum `loss_cls`); plain labels:
        LOSS_FUNC(outputs["logits"], labels) (part `loss_cls`); labels None: no classification loss;
      - every `outputs` entry named `loss_<name>` (a scalar from a model or head) is added.
    Each part is multiplied by its LOSS.WEIGHTS entry `[name, weight]` (name "cls" or the aux name
    without "loss_"; default 1.0). `parts` holds the unweighted float value of each part.
    Scores are cast to float32 so the loss is computed in full precision under autocast.
    """

    def __init__(self, loss_fn: LossFn, weights: Optional[Mapping[str, float]] = None):
        self.loss_fn = loss_fn
        self.weights = dict(weights or {})
        self._unused_weights_checked = False

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], labels: Optional[Labels]
    ) -> Tuple[torch.Tensor, Dict[str, float]]:
        terms: Dict[str, torch.Tensor] = {}
        parts: Dict[str, float] = {}
        if labels is not None:
            pairs = task_pairs(outputs, labels)
            per_task = {task: self.loss_fn(scores.float(), target) for task, (scores, target) in pairs.items()}
            terms[CLS_PART] = sum(per_task.values())
            if isinstance(labels, Mapping):
                parts = {f"{AUX_PREFIX}{CLS_PART}_{task}": v.item() for task, v in per_task.items()}
        for key, value in outputs.items():
            if not key.startswith(AUX_PREFIX):
                continue
            name = key[len(AUX_PREFIX):]
            if name in terms:
                raise ValueError(f"model output '{key}' collides with the classification loss part")
            if value.numel() != 1:
                raise ValueError(f"auxiliary loss '{key}' must be a scalar, got shape {tuple(value.shape)}")
            terms[name] = value.float().reshape(())
        if not terms:
            raise ValueError(f"no loss to optimise: labels are None and outputs {sorted(outputs)} have no "
                             f"'{AUX_PREFIX}*' entry")
        self._warn_unused_weights(terms)
        total = sum(self.weights.get(name, 1.0) * term for name, term in terms.items())
        parts.update({f"{AUX_PREFIX}{name}": term.item() for name, term in terms.items()})
        return total, parts

    def _warn_unused_weights(self, terms: Mapping[str, torch.Tensor]) -> None:
        """Warn once (at the first call) about LOSS.WEIGHTS names that match no loss part."""
        if self._unused_weights_checked:
            return
        self._unused_weights_checked = True
        unused = sorted(set(self.weights) - set(terms))
        if unused:
            logger.warning("LOSS.WEIGHTS names %s match no loss part (parts: %s)", unused, sorted(terms))


def _loss_weights(cfg) -> Dict[str, float]:
    weights = {}
    for entry in cfg.LOSS.WEIGHTS:
        if len(entry) != 2 or not isinstance(entry[0], str):
            raise ValueError(f"LOSS.WEIGHTS entries must be [name, weight] pairs, got {entry!r}")
        weights[entry[0]] = float(entry[1])
    return weights


def build_loss(cfg) -> Criterion:
    """The `Criterion` of MODEL.LOSS_FUNC (a LOSS_REGISTRY name) with LOSS.WEIGHTS."""
    if cfg.MODEL.LOSS_FUNC not in LOSS_REGISTRY:
        raise KeyError(f"MODEL.LOSS_FUNC '{cfg.MODEL.LOSS_FUNC}' is not in LOSS_REGISTRY "
                       f"(choose from {sorted(name for name, _ in LOSS_REGISTRY)})")
    return Criterion(LOSS_REGISTRY.get(cfg.MODEL.LOSS_FUNC)(cfg), _loss_weights(cfg))


def is_finite_loss(loss: torch.Tensor) -> bool:
    """True when every element of `loss` is finite (neither NaN nor inf)."""
    return bool(torch.isfinite(loss).all()) if isinstance(loss, torch.Tensor) else math.isfinite(loss)
