"""Ego-Exo (Li et al., CVPR 2021): an ego SlowFast trained with auxiliary egocentric losses.

Besides the classification head (PySlowFast names), three auxiliary heads on the ego backbone:

    head_ego     linear, pooled features -> 2 ego scores (teacher: an ego-vs-exo classifier)
    head_object  linear, pooled features -> EGOEXO.NUM_OBJECT_CLASSES object scores (teacher: an
                 object classifier)
    head_hoi     the hand-object interaction map on the slow pathway's last stage: conv 1x3x3 ->
                 ReLU -> conv 1x1x1 to 2 maps (hand, object), averaged over time

Losses (weighted by LOSS.WEIGHTS): `loss_kd_ego`, `loss_kd_object` = KL(log_softmax(s/T) ||
softmax(t/T)) * EGOEXO.KD_ALPHA * T^2 (T = EGOEXO.KD_TEMPERATURE) over the clips that have a teacher
entry (`has_teacher`); `loss_hoi` = BCE of the maps against the clips' boxes rasterised to the
feature grid (a cell is 1 when its centre lies in a box of that kind), over the clips with boxes.
The training entries come from the `EgoExoTargets` dataset (datasets/exo_targets.py). At test time
(and in eval mode) only the classification path runs; the auxiliary heads are listed in
`HEAD_KEY_PREFIXES`, so checkpoints without them (a plain SlowFast) load for fine-tuning.
"""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..build import MODEL_REGISTRY, build_backbone, build_head
from ..losses import distillation_kl
from .base import FlatBackboneModel

# Maps of the interaction head: hands, then objects (box kind ids 0 and 1).
HOI_MAPS = 2


def rasterise_boxes(boxes: torch.Tensor, height: int, width: int, num_maps: int = HOI_MAPS) -> torch.Tensor:
    """Box targets [B, M, 5] (kind, x1, y1, x2, y2 in [0, 1] of the frame; kind -1: padding) ->
    maps [B, num_maps, height, width]: 1 where the cell centre lies inside a box of that kind."""
    ys = (torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5) / height
    xs = (torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5) / width
    kind, x1, y1, x2, y2 = boxes.unbind(-1)  # each [B, M]
    inside = ((ys[None, None, :, None] >= y1[..., None, None]) & (ys[None, None, :, None] <= y2[..., None, None])
              & (xs[None, None, None, :] >= x1[..., None, None]) & (xs[None, None, None, :] <= x2[..., None, None]))
    maps = [(inside & (kind == k)[..., None, None]).any(1) for k in range(num_maps)]
    return torch.stack(maps, 1).to(boxes.dtype)


class InteractionMapHead(nn.Module):
    """Slow-pathway map [B, C, T, H, W] -> interaction logits [B, HOI_MAPS, H, W] (time-averaged)."""

    def __init__(self, dim_in: int, dim_inner: int):
        super().__init__()
        self.conv = nn.Conv3d(dim_in, dim_inner, (1, 3, 3), padding=(0, 1, 1))
        self.relu = nn.ReLU(inplace=True)
        self.projection = nn.Conv3d(dim_inner, HOI_MAPS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.relu(self.conv(x))).mean(2)


@MODEL_REGISTRY.register()
class EgoExo(FlatBackboneModel):
    """`forward(inputs, teacher_ego=None, teacher_object=None, has_teacher=None, hoi_boxes=None,
    has_boxes=None)`: teacher scores [B, 2] and [B, NUM_OBJECT_CLASSES], has_teacher [B] bool,
    hoi_boxes [B, M, 5], has_boxes [B] bool. Returns the head's outputs, `embeddings`, the auxiliary
    logits (`ego_scores`, `object_scores`, `hoi_maps`) and, given the targets, the `loss_*` terms."""

    BACKBONE = "SlowFast"
    HEAD = "ResNetBasicHead"
    HEAD_KEY_PREFIXES = ("head.", "head_ego.", "head_object.", "head_hoi.")
    TARGETS = ("teacher_ego", "teacher_object", "has_teacher", "hoi_boxes", "has_boxes")

    def __init__(self, cfg):
        backbone = build_backbone(cfg, cfg.MODEL.BACKBONE or self.BACKBONE)
        super().__init__(backbone)
        self.head = build_head(cfg, self.HEAD, in_dim=backbone.out_dim)
        self.head_ego = nn.Linear(backbone.out_dim, 2)
        self.head_object = nn.Linear(backbone.out_dim, cfg.EGOEXO.NUM_OBJECT_CLASSES)
        slow_dim = cfg.RESNET.WIDTH_PER_GROUP * 32
        self.head_hoi = InteractionMapHead(slow_dim, max(1, slow_dim // 8))
        self.temperature, self.alpha = cfg.EGOEXO.KD_TEMPERATURE, cfg.EGOEXO.KD_ALPHA
        self._slow: List[torch.Tensor] = []  # the last slow-pathway res5 map (kept by a hook, at most one)
        backbone.s5.register_forward_hook(self._keep_slow)

    def _keep_slow(self, _module: nn.Module, _inputs, outputs: List[torch.Tensor]) -> None:
        self._slow[:] = [outputs[0]]

    @classmethod
    def synthetic_entries(cls, cfg, batch_size: int, shapes) -> Dict[str, torch.Tensor]:
        """Random training targets for `batch_size` clips (tools/benchmark.py)."""
        boxes = torch.full((batch_size, cfg.EGOEXO.MAX_BOXES, 5), -1.0)
        boxes[:, 0] = torch.tensor([0, 0.2, 0.2, 0.6, 0.6])
        return {"teacher_ego": torch.randn(batch_size, 2),
                "teacher_object": torch.randn(batch_size, cfg.EGOEXO.NUM_OBJECT_CLASSES),
                "has_teacher": torch.ones(batch_size, dtype=torch.bool), "hoi_boxes": boxes,
                "has_boxes": torch.ones(batch_size, dtype=torch.bool)}

    @property
    def BATCH_INPUTS(self):  # noqa: N802 (the engine's attribute name)
        """The auxiliary targets while training; none in eval mode."""
        return self.TARGETS if self.training else ()

    def forward(self, inputs: List[torch.Tensor], teacher_ego: Optional[torch.Tensor] = None,
                teacher_object: Optional[torch.Tensor] = None, has_teacher: Optional[torch.Tensor] = None,
                hoi_boxes: Optional[torch.Tensor] = None, has_boxes: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        self._slow.clear()
        feats = self.backbone(inputs)
        slow = self._slow.pop()
        out = self.head(feats.pooled)
        out["embeddings"] = feats.pooled
        out["ego_scores"] = self.head_ego(feats.pooled)
        out["object_scores"] = self.head_object(feats.pooled)
        out["hoi_maps"] = self.head_hoi(slow)
        if has_teacher is not None:
            keep = has_teacher.bool()
            out["loss_kd_ego"] = distillation_kl(out["ego_scores"][keep], teacher_ego[keep], self.temperature,
                                                 self.alpha)
            out["loss_kd_object"] = distillation_kl(out["object_scores"][keep], teacher_object[keep],
                                                    self.temperature, self.alpha)
        if has_boxes is not None:
            out["loss_hoi"] = self.interaction_loss(out["hoi_maps"], hoi_boxes, has_boxes.bool())
        return out

    @staticmethod
    def interaction_loss(maps: torch.Tensor, boxes: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """BCE of logits [B, 2, H, W] against `boxes` rasterised to H x W, over the rows `keep` (0 if none)."""
        if not keep.any():
            return maps.sum() * 0.0
        target = rasterise_boxes(boxes[keep].float(), maps.shape[2], maps.shape[3])
        return F.binary_cross_entropy_with_logits(maps[keep].float(), target)
