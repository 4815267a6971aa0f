"""Loss functions (PySlowFast's names) and the criterion that combines a model's losses.

`LOSS_REGISTRY` holds the classification losses, each registered as a builder
`fn(cfg) -> Callable[[scores, labels], scalar]` (mean over the batch). `build_loss(cfg)` wraps
`MODEL.LOSS_FUNC` in a `Criterion` that also adds the auxiliary losses a model returns.
"""
import math
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
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
def cross_entropy(cfg: CfgNode) -> LossFn:
    """Softmax cross-entropy on class indices [B], with LOSS.LABEL_SMOOTHING."""
    smoothing = cfg.LOSS.LABEL_SMOOTHING
    return lambda scores, labels: F.cross_entropy(scores, labels, label_smoothing=smoothing)


@LOSS_REGISTRY.register()
def soft_cross_entropy(cfg: CfgNode) -> LossFn:
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
def bce(cfg: CfgNode) -> LossFn:
    """Binary cross-entropy on probabilities [B, C] against multi-hot labels [B, C]."""
    return _binary(cfg, F.binary_cross_entropy, "bce")


@LOSS_REGISTRY.register()
def bce_logit(cfg: CfgNode) -> LossFn:
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


def build_loss(cfg: CfgNode) -> Criterion:
    """The `Criterion` of MODEL.LOSS_FUNC (a LOSS_REGISTRY name) with LOSS.WEIGHTS."""
    if cfg.MODEL.LOSS_FUNC not in LOSS_REGISTRY:
        raise KeyError(f"MODEL.LOSS_FUNC '{cfg.MODEL.LOSS_FUNC}' is not in LOSS_REGISTRY "
                       f"(choose from {sorted(name for name, _ in LOSS_REGISTRY)})")
    return Criterion(LOSS_REGISTRY.get(cfg.MODEL.LOSS_FUNC)(cfg), _loss_weights(cfg))


def is_finite_loss(loss: torch.Tensor) -> bool:
    """True when every element of `loss` is finite (neither NaN nor inf)."""
    return bool(torch.isfinite(loss).all()) if isinstance(loss, torch.Tensor) else math.isfinite(loss)


def decoupled_contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    weight_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """Decoupled contrastive loss (Yeh et al., ECCV 2022) of `z1` [N, D] against `z2` [N, D], one direction.

    Row i's positive is (z1_i, z2_i); its negatives are z1_i against every other z1_j and z2_j (the
    positive and the self-similarity z1_i . z1_i are left out of the denominator). `weight_fn(z1, z2)`
    ([N] or a scalar), when given, multiplies the positive term only. The inputs are used as given
    (L2-normalise them first for cosine similarities). Returns the mean over rows, a 0-dim tensor.
    """
    cross = z1 @ z2.t() / temperature
    positive = -cross.diagonal()
    if weight_fn is not None:
        positive = positive * weight_fn(z1, z2)
    eye = torch.eye(z1.size(0), dtype=torch.bool, device=z1.device)
    negatives = torch.cat([(z1 @ z1.t() / temperature).masked_fill(eye, float("-inf")),
                           cross.masked_fill(eye, float("-inf"))], dim=1)
    return (positive + torch.logsumexp(negatives, dim=1)).mean()


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                    alpha: float = 1.0) -> torch.Tensor:
    """Knowledge distillation (Hinton et al.): KL(log_softmax(s/T) || softmax(t/T)) * alpha * T^2,
    summed over classes and averaged over the rows of `student`/`teacher` [N, C] (0 when N is 0)."""
    if student.size(0) == 0:
        return student.sum() * 0.0
    log_p = F.log_softmax(student.float() / temperature, dim=-1)
    q = F.softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(log_p, q, reduction="batchmean") * alpha * temperature ** 2


def _shares_tag(multi_hot: torch.Tensor) -> torch.Tensor:
    """[N, N] bool: clips i and j share at least one tag of `multi_hot` [N, K] (entries > 0)."""
    tags = (multi_hot > 0).float()
    return (tags @ tags.t()) > 0


def egonce_loss(sim: torch.Tensor, verb_multi_hot: torch.Tensor, noun_multi_hot: torch.Tensor,
                temperature: float = 0.05, verb: bool = True, noun: bool = True) -> torch.Tensor:
    """EgoNCE (EgoVLP): InfoNCE in both directions with action-aware positives.

    `sim` [N, N]: text rows, video columns (cosine similarities). Pair (i, j) is positive when i == j,
    or when clips i and j share at least one verb (`verb_multi_hot` [N, V]) and at least one noun
    (`noun_multi_hot` [N, M]); `verb=False` / `noun=False` drop that condition (both False: InfoNCE). A
    clip with no verb (or noun) has no off-diagonal positive through that tag. Returns the 0-dim
    `-mean_i log sum_{j pos} softmax_j(sim[i] / t) - mean_j log sum_{i pos} softmax_i(sim[:, j] / t)`,
    which is plain InfoNCE (text-to-video plus video-to-text) when no two clips share tags."""
    n = sim.shape[0]
    if sim.dim() != 2 or sim.shape[1] != n or verb_multi_hot.shape[0] != n or noun_multi_hot.shape[0] != n:
        raise ValueError(f"egonce_loss needs sim [N, N] and tags [N, *], got sim {tuple(sim.shape)}, verbs "
                         f"{tuple(verb_multi_hot.shape)}, nouns {tuple(noun_multi_hot.shape)}")
    positive = torch.eye(n, dtype=torch.bool, device=sim.device)
    shared = [_shares_tag(tags.to(sim.device)) for tags, use in ((verb_multi_hot, verb), (noun_multi_hot, noun)) if use]
    if shared:
        positive |= torch.stack(shared).all(0)
    logits = sim.float() / temperature
    masked = logits.masked_fill(~positive, float("-inf"))
    text_to_video = masked.logsumexp(1) - logits.logsumexp(1)
    video_to_text = masked.logsumexp(0) - logits.logsumexp(0)
    return -(text_to_video.mean() + video_to_text.mean())
