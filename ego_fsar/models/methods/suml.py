"""SUM-L (Wang et al., ICCV 2023): egocentric recognition aligned, through narrations, with unpaired
third-person (exo) video.

An ego SlowFast with EPIC verb/noun heads (PySlowFast names: `s1..s5`, `head.projection_verb`,
`head.projection_noun`) trains together with an exo SlowFast of its own weights whose stages and
head carry SUM-L's `_t` suffix (`s1_t`, `s1_fuse_t`, ..., `s5_t`, `head_t.projection`) and a
multi-label head over the exo taxonomy (BCE). An alignment layer per view (`align`, `align_t`) maps
the pooled features (each pathway averaged, slow then fast, L2-normalised) to the narration
embedding width, L2-normalised again. Losses (weighted by LOSS.WEIGHTS; released: cls 1, exo 0.1,
cross_view 0.02, align_ego 0.1, align_exo 0.1):

    loss_cls        CE on verb and noun (the engine's Criterion)
    loss_exo        BCE of the exo head against the exo clip's multi-hot tags
    loss_align_ego  DCL(ego video, ego narration) + DCL(ego narration, ego video), tau = MODEL.TEMP
    loss_align_exo  the same for the exo view
    loss_cross_view DCL both ways between ego and exo videos of the pairs whose narration cosine
                    exceeds SUML.CROSS_VIEW_THRESHOLD; 0 when fewer than 2 pairs pass. The released
                    code computes this term and discards it: SUML.CROSS_VIEW_LOSS False reproduces
                    that (the term is then not computed).

The exo branch exists only in a training job (TRAIN.ENABLE): a test-only job builds the ego path,
so a two-backbone checkpoint loads with its exo keys reported as unexpected and nothing missing.
In eval mode only the ego path runs (`BATCH_INPUTS` is empty), so validation reads plain ego clips.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..build import MODEL_REGISTRY, build_backbone, build_head
from ..losses import decoupled_contrastive_loss
from ..text_encoder import TextEncoder
from .base import FlatBackboneModel

# Suffix of the exo branch's module names in SUM-L checkpoints.
EXO_SUFFIX = "_t"


def _attach(owner: nn.Module, module: nn.Module, suffix: str) -> None:
    """Register `module`'s children on `owner` as `<name><suffix>` (their weights are owned there)."""
    for name, child in module.named_children():
        owner.add_module(name + suffix, child)


def dcl_both_ways(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """DCL(a, b) + DCL(b, a) of two batches of normalised embeddings [N, D]."""
    return decoupled_contrastive_loss(a, b, temperature) + decoupled_contrastive_loss(b, a, temperature)


class AlignmentHead(nn.Module):
    """pooled [B, D] -> L2-normalise -> linear to the text width -> L2-normalise [B, text_dim]."""

    def __init__(self, in_dim: int, text_dim: int):
        super().__init__()
        self.projection = nn.Linear(in_dim, text_dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(F.normalize(pooled, dim=-1)), dim=-1)


def exo_head_cfg(cfg):
    """`cfg` with MODEL.NUM_CLASSES set to the exo head's width (SUML.EXO_NUM_CLASSES)."""
    if cfg.SUML.EXO_NUM_CLASSES <= 0:
        raise ValueError(f"SUML.EXO_NUM_CLASSES must be the exo verb + noun class count, got "
                         f"{cfg.SUML.EXO_NUM_CLASSES}")
    exo_cfg = cfg.clone()
    exo_cfg.defrost()
    exo_cfg.MODEL.NUM_CLASSES = cfg.SUML.EXO_NUM_CLASSES
    return exo_cfg


@MODEL_REGISTRY.register()
class SUML(FlatBackboneModel):
    """`forward(inputs, exo_inputs=None, exo_label=None, text_embedding=None, exo_text_embedding=None)`.

    inputs / exo_inputs: pathway lists [B, C, T, H, W]; exo_label: multi-hot [B, SUML.EXO_NUM_CLASSES];
    text_embedding / exo_text_embedding: normalised narration embeddings [B, 384]. Returns the ego
    head's `verb`/`noun` (or `logits`) and `embeddings` [B, D]; with the exo entries also the
    `loss_*` terms above and `exo_logits` [B, SUML.EXO_NUM_CLASSES].
    """

    BACKBONE = "SlowFast"
    HEAD = "ResNetBasicHead"
    EXO_INPUTS = ("exo_inputs", "exo_label", "text_embedding", "exo_text_embedding")

    def __init__(self, cfg):
        backbone = build_backbone(cfg, cfg.MODEL.BACKBONE or self.BACKBONE)
        super().__init__(backbone)
        self.head = build_head(cfg, self.HEAD, in_dim=backbone.out_dim)
        self.temperature = cfg.MODEL.TEMP
        self.cross_view = cfg.SUML.CROSS_VIEW_LOSS
        self.threshold = cfg.SUML.CROSS_VIEW_THRESHOLD
        self.has_exo = bool(cfg.TRAIN.ENABLE)
        if not self.has_exo:
            return
        text_dim = TextEncoder(cfg.TEXT.ENCODER).dim
        exo = build_backbone(cfg, cfg.MODEL.BACKBONE or self.BACKBONE)
        _attach(self, exo, EXO_SUFFIX)
        self.__dict__["exo_backbone"] = exo  # its children are registered above, under `_t` names
        self.add_module("head" + EXO_SUFFIX, build_head(exo_head_cfg(cfg), self.HEAD, in_dim=exo.out_dim))
        self.align = AlignmentHead(backbone.out_dim, text_dim)
        self.add_module("align" + EXO_SUFFIX, AlignmentHead(exo.out_dim, text_dim))

    @classmethod
    def synthetic_entries(cls, cfg, batch_size: int, shapes: List[Tuple[int, ...]]) -> Dict[str, object]:
        """Random training entries of `batch_size` clips of pathway `shapes` (tools/benchmark.py)."""
        text = F.normalize(torch.randn(batch_size, TextEncoder(cfg.TEXT.ENCODER).dim), dim=-1)
        return {"exo_inputs": [torch.randn(batch_size, *s) for s in shapes],
                "exo_label": (torch.rand(batch_size, cfg.SUML.EXO_NUM_CLASSES) < 0.1).float(),
                "text_embedding": text, "exo_text_embedding": text.roll(1, 0)}

    @property
    def BATCH_INPUTS(self) -> Tuple[str, ...]:  # noqa: N802 (the engine's attribute name)
        """The exo entries while training with the exo branch; none in eval mode (ego-only)."""
        return self.EXO_INPUTS if self.training and self.has_exo else ()

    def forward(self, inputs: List[torch.Tensor], exo_inputs: Optional[List[torch.Tensor]] = None,
                exo_label: Optional[torch.Tensor] = None, text_embedding: Optional[torch.Tensor] = None,
                exo_text_embedding: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        ego = self.backbone(inputs)
        out = self.head(ego.pooled)
        out["embeddings"] = ego.pooled
        if exo_inputs is None:
            return out
        if not self.has_exo:
            raise ValueError("this SUML model has no exo branch (built with TRAIN.ENABLE False)")
        exo = self.exo_backbone(exo_inputs)
        exo_logits = self.head_t(exo.pooled)["logits"]
        out["exo_logits"] = exo_logits
        out.update(self.alignment_losses(self.align(ego.pooled), self.align_t(exo.pooled),
                                         text_embedding, exo_text_embedding))
        out["loss_exo"] = F.binary_cross_entropy_with_logits(exo_logits.float(), exo_label.float())
        return out

    def alignment_losses(self, z_ego: torch.Tensor, z_exo: torch.Tensor, t_ego: torch.Tensor,
                         t_exo: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Video-text DCL per view and the thresholded cross-view DCL (see the module doc); all [B, 384]."""
        z_ego, z_exo = z_ego.float(), z_exo.float()
        t_ego, t_exo = F.normalize(t_ego.float(), dim=-1), F.normalize(t_exo.float(), dim=-1)
        losses = {"loss_align_ego": dcl_both_ways(z_ego, t_ego, self.temperature),
                  "loss_align_exo": dcl_both_ways(z_exo, t_exo, self.temperature)}
        if self.cross_view:
            keep = (t_ego * t_exo).sum(-1) > self.threshold
            if int(keep.sum()) >= 2:
                losses["loss_cross_view"] = dcl_both_ways(z_ego[keep], z_exo[keep], self.temperature)
            else:
                losses["loss_cross_view"] = z_ego.new_zeros(())
        return losses
