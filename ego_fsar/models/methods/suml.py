"""SUM-L (Wang et al., ICCV 2023): egocentric recognition aligned, through narrations, with unpaired
third-person (exo) video.

An ego SlowFast trains together with an exo SlowFast of its own weights and both are aligned with
their narrations. State-dict names are those of the released model (SUM-L's
`SlowFast_LEMMA3S_PHRASE_EP_HOI_2S`), so a released `.pyth` loads with nothing missing or unexpected:

    s1..s5, s1_fuse..s4_fuse          ego SlowFast (PySlowFast names)
    headepic100.projections.{0,1}     ego verb/noun heads (Ego-Exo's `head{TASK}`, TASK epic100); a
                                      single class count (Charades-Ego, EgoToy) keeps `head.projection`
    s1_t..s5_t, s1_fuse_t..s4_fuse_t  exo SlowFast
    head_lemma.projections.{0,1}      exo verb/noun multi-label heads (SUML.EXO_NUM_CLASSES; the
                                      release's exo data is LEMMA-TPV, [25, 64])
    global_con_head.fpv_global_proj   ego / exo alignment layers: each pathway averaged, concatenated
    global_con_head.tpv_global_proj   (slow then fast), L2-normalised, linear to the narration width,
                                      L2-normalised again

Losses (weighted by LOSS.WEIGHTS; released: cls 1, exo 0.1, cross_view 0.02, align_ego 0.1,
align_exo 0.1):

    loss_cls        CE on verb and noun (the engine's Criterion)
    loss_exo        BCE of the exo verb head + BCE of the exo noun head (each a mean over its classes)
    loss_align_ego  DCL(ego video, ego narration) + DCL(ego narration, ego video), tau = MODEL.TEMP
    loss_align_exo  the same for the exo view
    loss_cross_view DCL both ways between ego and exo videos of the pairs whose narration cosine
                    exceeds SUML.CROSS_VIEW_THRESHOLD; 0 when fewer than 2 pairs pass. The released
                    code computes a cross-view term and discards it: SUML.CROSS_VIEW_LOSS False
                    reproduces that (the term is then not computed).

The exo branch exists only in a training job (TRAIN.ENABLE): a test-only job builds the ego path,
so a two-backbone checkpoint loads with its exo keys reported as unexpected and nothing missing.
In eval mode only the ego path runs (`BATCH_INPUTS` is empty), so validation reads plain ego clips.
Initialising training from a single-backbone SlowFast (PySlowFast, Kinetics): the heads keep their
initialisation (`HEAD_KEY_PREFIXES`) and, with SUML.EXO_INIT_FROM_EGO, the exo stages start from a
copy of the checkpoint's ego stages (`complete_checkpoint`; the release's `copy_s1_params`).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from ...utils.logging import get_logger
from ..build import MODEL_REGISTRY, build_backbone, build_head
from ..losses import decoupled_contrastive_loss
from ..text_encoder import TextEncoder
from .base import FlatBackboneModel

logger = get_logger(__name__)

# Suffix of the exo branch's stage names in SUM-L checkpoints.
EXO_SUFFIX = "_t"
# Module names of the released model's ego verb/noun head, exo head and alignment layers.
EGO_HEAD, EXO_HEAD, ALIGN_HEAD = "headepic100", "head_lemma", "global_con_head"


def _attach(owner: nn.Module, module: nn.Module, suffix: str) -> List[str]:
    """Register `module`'s children on `owner` as `<name><suffix>` (their weights are owned there);
    returns the new names."""
    names = []
    for name, child in module.named_children():
        owner.add_module(name + suffix, child)
        names.append(name + suffix)
    return names


def dcl_both_ways(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """DCL(a, b) + DCL(b, a) of two batches of normalised embeddings [N, D]."""
    return decoupled_contrastive_loss(a, b, temperature) + decoupled_contrastive_loss(b, a, temperature)


class MultiTaskHead(nn.Module):
    """Ego-Exo's multi-task head: pooled [B, D] -> dropout -> one linear per class count
    (`projections.i`, PySlowFast's normal(FC_INIT_STD) init) -> logits [B, K_i] each."""

    def __init__(self, in_dim: int, counts: Sequence[int], dropout_rate: float, init_std: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()
        self.projections = nn.ModuleList(nn.Linear(in_dim, k) for k in counts)
        for projection in self.projections:
            nn.init.normal_(projection.weight, std=init_std)
            nn.init.zeros_(projection.bias)

    def forward(self, pooled: torch.Tensor) -> List[torch.Tensor]:
        x = self.dropout(pooled)
        return [projection(x) for projection in self.projections]


class AlignmentHead(nn.Module):
    """SUM-L's `global_con_head`: per view, pooled [B, D] -> L2-normalise -> linear to the text width
    (`fpv_global_proj` ego, `tpv_global_proj` exo) -> L2-normalise [B, text_dim]."""

    def __init__(self, in_dim: int, text_dim: int):
        super().__init__()
        self.fpv_global_proj = nn.Linear(in_dim, text_dim)
        self.tpv_global_proj = nn.Linear(in_dim, text_dim)

    @staticmethod
    def _embed(projection: nn.Linear, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(projection(F.normalize(pooled, dim=-1)), dim=-1)

    def forward(self, ego: torch.Tensor, exo: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._embed(self.fpv_global_proj, ego), self._embed(self.tpv_global_proj, exo)


def exo_class_counts(cfg: CfgNode) -> List[int]:
    """SUML.EXO_NUM_CLASSES as [exo verbs, exo nouns], both positive."""
    counts = cfg.SUML.EXO_NUM_CLASSES
    if not isinstance(counts, (list, tuple)) or len(counts) != 2 or min(counts) <= 0:
        raise ValueError(f"SUML.EXO_NUM_CLASSES must be [exo verb classes, exo noun classes], got {counts}")
    return list(counts)


@MODEL_REGISTRY.register()
class SUML(FlatBackboneModel):
    """`forward(inputs, exo_inputs=None, exo_label=None, text_embedding=None, exo_text_embedding=None)`.

    inputs / exo_inputs: pathway lists [B, C, T, H, W]; exo_label: multi-hot [B, V + N] (exo verbs,
    then exo nouns; SUML.EXO_NUM_CLASSES [V, N]); text_embedding / exo_text_embedding: normalised
    narration embeddings [B, 384]. Returns the ego head's `verb`/`noun` (or `logits`) and
    `embeddings` [B, D]; with the exo entries also the `loss_*` terms above and `exo_logits` [B, V + N].
    """

    BACKBONE = "SlowFast"
    HEAD = "ResNetBasicHead"
    EXO_INPUTS = ("exo_inputs", "exo_label", "text_embedding", "exo_text_embedding")

    def __init__(self, cfg):
        backbone = build_backbone(cfg, cfg.MODEL.BACKBONE or self.BACKBONE)
        super().__init__(backbone)
        counts = cfg.MODEL.NUM_CLASSES
        if isinstance(counts, (list, tuple)) and len(counts) == 2:
            self.add_module(EGO_HEAD, MultiTaskHead(backbone.out_dim, counts, cfg.MODEL.DROPOUT_RATE,
                                                    cfg.MODEL.FC_INIT_STD))
            self.ego_head_name = EGO_HEAD
        else:
            self.head = build_head(cfg, self.HEAD, in_dim=backbone.out_dim)
            self.ego_head_name = "head"
        self.HEAD_KEY_PREFIXES = (f"{self.ego_head_name}.", f"{EXO_HEAD}.", f"{ALIGN_HEAD}.")
        self.temperature = cfg.MODEL.TEMP
        self.cross_view = cfg.SUML.CROSS_VIEW_LOSS
        self.threshold = cfg.SUML.CROSS_VIEW_THRESHOLD
        self.exo_init_from_ego = cfg.SUML.EXO_INIT_FROM_EGO
        self.has_exo = bool(cfg.TRAIN.ENABLE)
        self.exo_stages: List[str] = []
        if not self.has_exo:
            return
        text_dim = TextEncoder(cfg.TEXT.ENCODER).dim
        exo = build_backbone(cfg, cfg.MODEL.BACKBONE or self.BACKBONE)
        self.exo_stages = _attach(self, exo, EXO_SUFFIX)
        self.__dict__["exo_backbone"] = exo  # its children are registered above, under `_t` names
        self.exo_counts = exo_class_counts(cfg)
        self.add_module(EXO_HEAD, MultiTaskHead(exo.out_dim, self.exo_counts, cfg.MODEL.DROPOUT_RATE,
                                                cfg.MODEL.FC_INIT_STD))
        self.add_module(ALIGN_HEAD, AlignmentHead(backbone.out_dim, text_dim))

    def ego_head(self, pooled: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Ego verb/noun logits {"verb": [B, 97], "noun": [B, 300]}, or {"logits": [B, K]}."""
        head = getattr(self, self.ego_head_name)
        if self.ego_head_name == "head":
            return head(pooled)
        verb, noun = head(pooled)
        return {"verb": verb, "noun": noun}

    def complete_checkpoint(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """`state` (flat checkpoint names) with the exo stages filled from its ego stages when it has
        none (a single-backbone SlowFast) and SUML.EXO_INIT_FROM_EGO; otherwise `state` unchanged."""
        exo = set(self.exo_stages)
        if not self.exo_init_from_ego or not exo or any(k.split(".", 1)[0] in exo for k in state):
            return state
        copies = {}
        for key, value in state.items():
            stage, _, rest = key.partition(".")
            if stage + EXO_SUFFIX in exo:
                copies[f"{stage}{EXO_SUFFIX}.{rest}"] = value
        if copies:
            logger.info("The checkpoint has no exo branch: its %d ego stage weights also initialise the exo "
                        "stages (%s; SUML.EXO_INIT_FROM_EGO)", len(copies), ", ".join(sorted(exo)))
        return {**state, **copies}

    @classmethod
    def synthetic_entries(cls, cfg: CfgNode, batch_size: int, shapes: List[Tuple[int, ...]]) -> Dict[str, object]:
        """Random training entries of `batch_size` clips of pathway `shapes` (tools/benchmark.py)."""
        text = F.normalize(torch.randn(batch_size, TextEncoder(cfg.TEXT.ENCODER).dim), dim=-1)
        return {"exo_inputs": [torch.randn(batch_size, *s) for s in shapes],
                "exo_label": (torch.rand(batch_size, sum(exo_class_counts(cfg))) < 0.1).float(),
                "text_embedding": text, "exo_text_embedding": text.roll(1, 0)}

    @property
    def BATCH_INPUTS(self) -> Tuple[str, ...]:  # noqa: N802 (the engine's attribute name)
        """The exo entries while training with the exo branch; none in eval mode (ego-only)."""
        return self.EXO_INPUTS if self.training and self.has_exo else ()

    def forward(self, inputs: List[torch.Tensor], exo_inputs: Optional[List[torch.Tensor]] = None,
                exo_label: Optional[torch.Tensor] = None, text_embedding: Optional[torch.Tensor] = None,
                exo_text_embedding: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        ego = self.backbone(inputs)
        out = self.ego_head(ego.pooled)
        out["embeddings"] = ego.pooled
        if exo_inputs is None:
            return out
        if not self.has_exo:
            raise ValueError("this SUML model has no exo branch (built with TRAIN.ENABLE False)")
        exo = self.exo_backbone(exo_inputs)
        exo_logits = getattr(self, EXO_HEAD)(exo.pooled)
        out["exo_logits"] = torch.cat(exo_logits, dim=1)
        z_ego, z_exo = getattr(self, ALIGN_HEAD)(ego.pooled, exo.pooled)
        out.update(self.alignment_losses(z_ego, z_exo, text_embedding, exo_text_embedding))
        targets = exo_label.float().split(self.exo_counts, dim=1)
        out["loss_exo"] = sum(F.binary_cross_entropy_with_logits(logits.float(), target)
                              for logits, target in zip(exo_logits, targets))
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
