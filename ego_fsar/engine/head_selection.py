"""Which backbone and few-shot head an episodic test (or episodic validation) runs, refusing heads that
no checkpoint trained.

A model with a few-shot head of its own (FewShot) is tested with it; any other model's backbone gets
HEAD.NAME built on its width. A head whose class declares `PARAMETER_FREE = True` (ProtoNet, OTAM, LogReg)
predicts the same without training; any other must come from a checkpoint (TEST.ALLOW_UNTRAINED_HEAD
turns the refusal into a warning). With a feature store no backbone is built: `stored_features_head`
loads only the head's weights.
"""
from typing import List, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

from ego_fsar.models import build_head
from ego_fsar.models.build import MODEL_REGISTRY
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for
from ego_fsar.utils.logging import get_logger

logger = get_logger(__name__)


def _check_trained(head: torch.nn.Module, untrained: str, cfg: CfgNode) -> None:
    """Refuse (or, with TEST.ALLOW_UNTRAINED_HEAD, warn about) testing `head` with weights that no
    checkpoint trained, as `untrained` explains, unless its class declares `PARAMETER_FREE`."""
    if not untrained or getattr(head, "PARAMETER_FREE", False):
        return
    count = sum(p.numel() for p in head.parameters() if p.requires_grad)
    message = (f"HEAD.NAME {type(head).__name__}: this few-shot head has {count:,} trainable parameters "
               f"that no checkpoint trained ({untrained})")
    if not cfg.TEST.ALLOW_UNTRAINED_HEAD:
        raise ValueError(f"{message}. Meta-train it first (MODEL.MODEL_NAME FewShot, TRAIN.PROTOCOL episodic) "
                         f"and test that run's checkpoint, or set TEST.ALLOW_UNTRAINED_HEAD True to test its "
                         f"random weights anyway")
    logger.warning("%s; testing its random weights (TEST.ALLOW_UNTRAINED_HEAD True)", message)


def fewshot_parts(model: torch.nn.Module, cfg: CfgNode) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """(backbone, few-shot head) of a model: its own head for FewShot models, else `HEAD.NAME` built
    on the backbone's width (e.g. ProtoNet on a pre-trained classifier's backbone).

    A head whose class declares `PARAMETER_FREE = True` predicts the same without training (ProtoNet,
    OTAM, LogReg). Any other head must come from a checkpoint: a head built here, or one whose
    weights the loaded checkpoint lacked (`untrained_head_keys`), raises a ValueError naming the head,
    unless TEST.ALLOW_UNTRAINED_HEAD (then a warning)."""
    inner = du.unwrap(model)
    head = getattr(inner, "fewshot_head", None)
    if head is None:
        head = build_head(cfg, in_dim=inner.backbone.out_dim).to(device_for(cfg))
        untrained = _no_fewshot_head(cfg)
    else:
        untrained = _lacking(getattr(inner, "untrained_head_keys", []))
    _check_trained(head, untrained, cfg)
    return inner.backbone, head


def _no_fewshot_head(cfg: CfgNode) -> str:
    return f"MODEL.MODEL_NAME {cfg.MODEL.MODEL_NAME} has no few-shot head; it was built with random weights"


def _lacking(missing: Sequence[str]) -> str:
    return (f"the checkpoint loaded lacks {len(missing)} of its weights: {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}") if missing else ""


class _HeadOnly(torch.nn.Module):
    """A model holding only its few-shot head (`head.*` keys, as in a FewShot checkpoint), to load the
    test checkpoint's head weights without building the backbone. `untrained_head_keys` as FewShot's."""

    HEAD_KEY_PREFIXES = ("head.",)

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.head = head
        self.untrained_head_keys: List[str] = []
        self.register_load_state_dict_post_hook(_record_missing_head_keys)

    @property
    def fewshot_head(self) -> torch.nn.Module:
        return self.head


def _record_missing_head_keys(module: _HeadOnly, incompatible_keys) -> None:
    module.untrained_head_keys = sorted(incompatible_keys.missing_keys)


def stored_features_head(cfg: CfgNode, in_dim: int) -> torch.nn.Module:
    """HEAD.NAME on features of width `in_dim` (a feature store's), without a backbone: its weights come
    from the test checkpoint (`load_test_checkpoint`'s precedence and checks) when MODEL.MODEL_NAME has a
    few-shot head of its own, as `fewshot_parts` would give them; untrained heads are refused alike."""
    head = build_head(cfg, in_dim=in_dim).to(device_for(cfg))
    if not hasattr(MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME), "fewshot_head"):
        _check_trained(head, _no_fewshot_head(cfg), cfg)
        return head
    holder = _HeadOnly(head)
    logger.info("Loading only the few-shot head (head.*) of the test checkpoint: the features come from the store, "
                "so its backbone weights are reported as unexpected keys")
    cu.load_test_checkpoint(cfg, holder)
    _check_trained(head, _lacking(holder.untrained_head_keys), cfg)
    return head
