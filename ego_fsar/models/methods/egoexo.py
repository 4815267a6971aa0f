"""Ego-Exo (Li et al., CVPR 2021): an ego SlowFast trained with auxiliary egocentric losses.

State-dict names are the release's (github.com/facebookresearch/Ego-Exo: `HandObjKdSlowFastHSlow`, the
model of its Kinetics-400 `Ego_Exo_SLOWFAST_8x8_R{50,101}.pyth`; `HandObjMultiTaskSlowFastHSlow` and
`HandObjSlowFastHSlow`, its Ego-Exo* models on EPIC-100 and Charades-Ego), so a released `.pyth` loads
with nothing missing or unexpected:

    s1..s5, s1_fuse..s4_fuse          the SlowFast (PySlowFast names)
    head.projections.{0,1,2}          with EGOEXO.KD, one classifier (MODEL.NUM_CLASSES) then the
                                      distillation heads: ego score (2) and object score
                                      (EGOEXO.NUM_OBJECT_CLASSES), linears on the pooled pathways
                                      (Ego-Exo's `MultiTaskHead`, dropout shared)
    headepic100.projections.{0,1}     EPIC verb/noun [97, 300] (Ego-Exo's `head{TASK}`, TASK epic100, as
                                      SUM-L), followed by the distillation heads with EGOEXO.KD
    head.projection                   a single classifier without EGOEXO.KD (PySlowFast's head)
    handobjhead.pathway0_conv_fcn0    the interaction-map head on the slow pathway's res5 map: conv
    handobjhead.score_projection      1x3x3 to EGOEXO.HEAD_CONV_DIM -> ReLU -> conv 1x1x1 to 2 maps
                                      (hand, object), one pair per frame

Losses (weighted by LOSS.WEIGHTS; the release's factors are in configs/EPIC-KITCHENS/EGOEXO_*.yaml):

    loss_kd_ego, loss_kd_object  KL(log_softmax(s/T) || softmax(t/T)) * EGOEXO.KD_ALPHA * T^2
                                 (T = EGOEXO.KD_TEMPERATURE) over the clips with a teacher entry
                                 (`has_teacher`); the release's per-head KD.ALPHA_LIST [0.1, 0.5] is
                                 LOSS.WEIGHTS kd_ego 0.1, kd_object 0.5 here (with KD_ALPHA 1)
    loss_hand, loss_obj          BCE with logits (mean over clips, frames and cells) of each map
                                 against the clip's boxes of that kind rasterised to the feature grid:
                                 the cells floor(x * W)..floor(x2 * W) (clamped, inclusive), likewise
                                 in y, get the box's score (EGOEXO.HOI_LOSS_MODE "soft", the largest
                                 over boxes) or 1 ("hard"); over the clips with boxes (`has_boxes`)

`count_kd_missing_teacher` (training, with EGOEXO.KD): the clips of the batch without a teacher
entry; the trainer sums it over each epoch and reports it (train_epoch `kd_missing_teacher`).

Deliberate differences from the release:
- the boxes are one set per clip, in [0, 1] of the whole frame (EgoExoTargets): every frame of a clip
  gets the same target, and the training crop is not applied to them (the release reads per-frame
  detections and crops them with the frames);
- a clip without a teacher entry gets no distillation loss and is counted (the release raises a
  KeyError), a clip without boxes gets no interaction loss (the release has detections for every video);
- the interaction head has one conv layer (the release's HANDOBJ.HEAD_NUM_CONV 1, never changed) and
  BCE's pos_weight is 1 (HANDOBJ.POS_WEIGHT, likewise);
- Charades-Ego's single classifier is `head.projection`, not `headcharades-ego.projection`.

The training targets come from the `EgoExoTargets` dataset (datasets/exo_targets.py). The auxiliary
heads exist only in a training job (TRAIN.ENABLE): a test-only job builds the classifier, so a
released or trained checkpoint loads with its auxiliary keys reported as unexpected and nothing
missing; in eval mode only the classification path runs (`BATCH_INPUTS` is empty, no auxiliary output).
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from ..build import MODEL_REGISTRY, build_backbone, build_head
from ..losses import distillation_kl
from .base import FlatBackboneModel
from .suml import EGO_HEAD, MultiTaskHead

# Maps of the interaction head: hands, then objects (box kind ids 0 and 1).
HOI_MAPS = 2
# Classes of the ego-score teacher (ego vs exo).
EGO_SCORE_CLASSES = 2
# Module name of the interaction-map head in Ego-Exo checkpoints.
HOI_HEAD = "handobjhead"
# Columns of a box row: kind, x1, y1, x2, y2, score.
BOX_COLUMNS = 6


def rasterise_boxes(boxes: torch.Tensor, height: int, width: int, soft: bool = True,
                    num_maps: int = HOI_MAPS) -> torch.Tensor:
    """Boxes [B, M, 6] (kind, x1, y1, x2, y2 in [0, 1] of the frame, score; kind -1: padding) -> maps
    [B, num_maps, height, width]: the cells floor(x1 * width)..floor(x2 * width) by
    floor(y1 * height)..floor(y2 * height) (clamped to the grid, inclusive) of each box of kind k get
    its score (the largest over boxes) with `soft`, else 1; other cells 0 (Ego-Exo's `gen_targets`)."""
    kind, x1, y1, x2, y2, score = boxes.unbind(-1)  # each [B, M]

    def cells(lo: torch.Tensor, hi: torch.Tensor, size: int) -> torch.Tensor:  # [B, M, size] bool
        grid = torch.arange(size, device=boxes.device)
        first, last = ((v * size).floor().clamp(0, size - 1)[..., None] for v in (lo, hi))
        return (grid >= first) & (grid <= last)

    inside = cells(y1, y2, height)[..., :, None] & cells(x1, x2, width)[..., None, :]  # [B, M, H, W]
    value = score if soft else torch.ones_like(score)
    maps = [(inside * (value * (kind == k))[..., None, None]).amax(1) if boxes.size(1) else
            boxes.new_zeros(boxes.size(0), height, width) for k in range(num_maps)]
    return torch.stack(maps, 1).to(boxes.dtype)


class HandObjectHead(nn.Module):
    """Ego-Exo's `HandObjHeadSingle` on the slow pathway: res5 map [B, C, T, H, W] -> interaction
    logits [B, 2, T, H, W] (hand, object)."""

    def __init__(self, dim_in: int, conv_dim: int):
        super().__init__()
        self.pathway0_conv_fcn0 = nn.Conv3d(dim_in, conv_dim, (1, 3, 3), padding=(0, 1, 1))
        self.score_projection = nn.Conv3d(conv_dim, HOI_MAPS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_projection(F.relu(self.pathway0_conv_fcn0(x)))


def interaction_losses(maps: torch.Tensor, boxes: torch.Tensor, keep: torch.Tensor,
                       soft: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """(hand, object) BCE of logits [B, 2, T, H, W] against `boxes` [B, M, 6] rasterised to H x W (the
    same target in every frame), over the rows `keep` [B] (both 0 when none is kept)."""
    if not keep.any():
        zero = maps.sum() * 0.0
        return zero, zero
    kept = maps[keep].float()
    target = rasterise_boxes(boxes[keep].float(), kept.shape[3], kept.shape[4], soft)
    target = target[:, :, None].expand_as(kept)
    hand, obj = (F.binary_cross_entropy_with_logits(kept[:, k], target[:, k]) for k in range(HOI_MAPS))
    return hand, obj


@MODEL_REGISTRY.register()
class EgoExo(FlatBackboneModel):
    """`forward(inputs, teacher_ego=None, teacher_object=None, has_teacher=None, hoi_boxes=None,
    has_boxes=None)`: teacher scores [B, 2] and [B, NUM_OBJECT_CLASSES], has_teacher [B] bool,
    hoi_boxes [B, M, 6], has_boxes [B] bool. Returns the classifier's `logits` (or `verb`/`noun`) and
    `embeddings` [B, D]; a training model (TRAIN.ENABLE) in train mode also `hoi_maps`
    [B, 2, T, H, W], with EGOEXO.KD `ego_scores` [B, 2] and `object_scores` [B, NUM_OBJECT_CLASSES],
    and given the targets the `loss_*` terms and `count_kd_missing_teacher` (see the module doc)."""

    BACKBONE = "SlowFast"
    HEAD = "ResNetBasicHead"
    KD_TARGETS = ("teacher_ego", "teacher_object", "has_teacher")
    HOI_TARGETS = ("hoi_boxes", "has_boxes")

    def __init__(self, cfg):
        backbone = build_backbone(cfg, cfg.MODEL.BACKBONE or self.BACKBONE)
        super().__init__(backbone)
        counts = cfg.MODEL.NUM_CLASSES
        self.class_counts = list(counts) if isinstance(counts, (list, tuple)) else [counts]
        self.kd, self.has_aux = bool(cfg.EGOEXO.KD), bool(cfg.TRAIN.ENABLE)
        self.head_name = EGO_HEAD if len(self.class_counts) == 2 else "head"
        if self.kd or len(self.class_counts) == 2:
            kd_counts = [EGO_SCORE_CLASSES, cfg.EGOEXO.NUM_OBJECT_CLASSES] if self.kd and self.has_aux else []
            self.add_module(self.head_name, MultiTaskHead(backbone.out_dim, self.class_counts + kd_counts,
                                                          cfg.MODEL.DROPOUT_RATE, cfg.MODEL.FC_INIT_STD))
        else:
            self.head = build_head(cfg, self.HEAD, in_dim=backbone.out_dim)
        self.HEAD_KEY_PREFIXES = (f"{self.head_name}.", f"{HOI_HEAD}.")
        self.temperature, self.alpha = cfg.EGOEXO.KD_TEMPERATURE, cfg.EGOEXO.KD_ALPHA
        self.soft_boxes = hoi_loss_mode(cfg) == "soft"
        self._slow: List[torch.Tensor] = []  # the last slow-pathway res5 map (kept by a hook, at most one)
        if self.has_aux:
            self.add_module(HOI_HEAD, HandObjectHead(cfg.RESNET.WIDTH_PER_GROUP * 32, cfg.EGOEXO.HEAD_CONV_DIM))
            backbone.s5.register_forward_hook(self._keep_slow)

    def _keep_slow(self, _module: nn.Module, _inputs, outputs: List[torch.Tensor]) -> None:
        self._slow[:] = [outputs[0]]

    @classmethod
    def synthetic_entries(cls, cfg: CfgNode, batch_size: int, shapes: List[Tuple[int, ...]]) -> Dict[str, torch.Tensor]:
        """Random training targets for `batch_size` clips (tools/benchmark.py)."""
        boxes = torch.full((batch_size, cfg.EGOEXO.MAX_BOXES, BOX_COLUMNS), -1.0)
        boxes[:, 0] = torch.tensor([0, 0.2, 0.2, 0.6, 0.6, 0.9])
        entries = {"hoi_boxes": boxes, "has_boxes": torch.ones(batch_size, dtype=torch.bool)}
        if cfg.EGOEXO.KD:
            entries.update(teacher_ego=torch.randn(batch_size, EGO_SCORE_CLASSES),
                           teacher_object=torch.randn(batch_size, cfg.EGOEXO.NUM_OBJECT_CLASSES),
                           has_teacher=torch.ones(batch_size, dtype=torch.bool))
        return entries

    @property
    def BATCH_INPUTS(self) -> Tuple[str, ...]:  # noqa: N802 (the engine's attribute name)
        """The auxiliary targets while training a model with the auxiliary heads; none in eval mode."""
        if not (self.training and self.has_aux):
            return ()
        return (self.KD_TARGETS if self.kd else ()) + self.HOI_TARGETS

    def classify(self, logits: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The classifier's outputs among the head's: {"verb", "noun"} or {"logits"}."""
        if len(self.class_counts) == 2:
            return {"verb": logits[0], "noun": logits[1]}
        return {"logits": logits[0]}

    def forward(self, inputs: List[torch.Tensor], teacher_ego: Optional[torch.Tensor] = None,
                teacher_object: Optional[torch.Tensor] = None, has_teacher: Optional[torch.Tensor] = None,
                hoi_boxes: Optional[torch.Tensor] = None, has_boxes: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        self._slow.clear()
        feats = self.backbone(inputs)
        slow = self._slow.pop() if self._slow else None
        head = getattr(self, self.head_name)
        if isinstance(head, MultiTaskHead):
            logits = head(feats.pooled)
            out, kd_logits = self.classify(logits), logits[len(self.class_counts):]
        else:
            out, kd_logits = head(feats.pooled), []
        out["embeddings"] = feats.pooled
        if not (self.has_aux and self.training):
            return out
        out["hoi_maps"] = getattr(self, HOI_HEAD)(slow)
        if self.kd:
            out["ego_scores"], out["object_scores"] = kd_logits
        if self.kd and has_teacher is not None:
            keep = has_teacher.bool()
            out["loss_kd_ego"] = distillation_kl(out["ego_scores"][keep], teacher_ego[keep], self.temperature,
                                                 self.alpha)
            out["loss_kd_object"] = distillation_kl(out["object_scores"][keep], teacher_object[keep],
                                                    self.temperature, self.alpha)
            out["count_kd_missing_teacher"] = (~keep).sum().float()
        if has_boxes is not None:
            out["loss_hand"], out["loss_obj"] = interaction_losses(out["hoi_maps"], hoi_boxes, has_boxes.bool(),
                                                                   self.soft_boxes)
        return out


def hoi_loss_mode(cfg: CfgNode) -> str:
    """EGOEXO.HOI_LOSS_MODE, checked: "soft" (box scores as targets) or "hard" (1)."""
    mode = cfg.EGOEXO.HOI_LOSS_MODE
    if mode not in ("soft", "hard"):
        raise ValueError(f"EGOEXO.HOI_LOSS_MODE must be 'soft' or 'hard', got {mode!r}")
    return mode
