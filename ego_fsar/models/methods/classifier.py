"""Supervised video classifiers: a backbone plus a classification head.

`MODEL.MODEL_NAME` picks the pair and with it the checkpoint layout: `SlowFast` and `ResNet`
(PySlowFast: `head.projection`), `VideoMAE` (VideoMAE: `head`).
"""
from typing import Dict, List

import torch

from ..build import MODEL_REGISTRY, build_backbone, build_head
from .base import FlatBackboneModel


class VideoClassifier(FlatBackboneModel):
    """`forward(inputs: List[Tensor[B,C,T,H,W]]) -> {"logits": [B, K]}` (or `{"verb", "noun"}`)."""

    BACKBONE = ""
    HEAD = ""

    def __init__(self, cfg):
        backbone = build_backbone(cfg, cfg.MODEL.BACKBONE or self.BACKBONE)
        super().__init__(backbone)
        self.head = build_head(cfg, self.HEAD, in_dim=backbone.out_dim)
        # MODEL.DETACH_FINAL_FC: the loss trains the head only, the backbone's parameters get no gradient.
        self.FIND_UNUSED_PARAMETERS = cfg.MODEL.DETACH_FINAL_FC

    def forward(self, inputs: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        out = self.backbone(inputs)
        result = self.head(out.pooled)
        result["embeddings"] = out.pooled
        return result


@MODEL_REGISTRY.register()
class SlowFast(VideoClassifier):
    """PySlowFast's SlowFast network (MODEL_NAME SlowFast)."""

    BACKBONE = "SlowFast"
    HEAD = "ResNetBasicHead"


@MODEL_REGISTRY.register()
class ResNet(VideoClassifier):
    """PySlowFast's single-pathway ResNet: Slow, I3D, C2D by MODEL.ARCH (MODEL_NAME ResNet)."""

    BACKBONE = "ResNet"
    HEAD = "ResNetBasicHead"
