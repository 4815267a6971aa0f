"""VideoMAE's fine-tuning classifier (MODEL_NAME VideoMAE): VideoViT plus VideoMAE's `head`.

State-dict names are VideoMAE's own (`patch_embed.*`, `blocks.*`, `fc_norm.*`, `head.weight`,
`head.bias`), so a VideoMAE `.pth` (`{"model": ...}`) loads with no missing or unexpected keys.
"""
from typing import Dict

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY, MODEL_REGISTRY
from .classifier import VideoClassifier


@HEAD_REGISTRY.register()
class VideoMAEHead(nn.Linear):
    """Dropout (MODEL.DROPOUT_RATE) then VideoMAE's linear `head`, whose weight and bias are this
    module's own. Initialised as VideoMAE: truncated normal (std 0.02) times VIT.HEAD_INIT_SCALE,
    zero bias. `forward(pooled [B, D]) -> {"logits": [B, K]}`; MODEL.DETACH_FINAL_FC detaches `pooled`
    so that the loss trains the head only. Built from a config or from its arguments (`@configurable`)."""

    @configurable
    def __init__(self, in_dim: int, num_classes: int = 400, dropout_rate: float = 0.5, detach_final_fc: bool = False,
                 init_scale: float = 0.001):
        if not isinstance(num_classes, int):
            raise ValueError(f"num_classes (MODEL.NUM_CLASSES): VideoMAE has one head, expected an int, "
                             f"got {num_classes!r}")
        super().__init__(in_dim, num_classes)
        self.dropout = nn.Dropout(dropout_rate)
        self.detach_final_fc = detach_final_fc
        with torch.no_grad():
            nn.init.trunc_normal_(self.weight, std=0.02).mul_(init_scale)
            nn.init.zeros_(self.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        m = cfg.MODEL
        return {"in_dim": in_dim, "num_classes": m.NUM_CLASSES, "dropout_rate": m.DROPOUT_RATE,
                "detach_final_fc": m.DETACH_FINAL_FC, "init_scale": cfg.VIT.HEAD_INIT_SCALE}

    def forward(self, pooled: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.dropout(pooled)
        return {"logits": super().forward(x.detach() if self.detach_final_fc else x)}


@MODEL_REGISTRY.register()
class VideoMAE(VideoClassifier):
    """VideoMAE ViT classifier, sized by the VIT group (ViT-S: 384/12/6, ViT-B: 768/12/12)."""

    BACKBONE = "VideoViT"
    HEAD = "VideoMAEHead"
    # VideoMAE's fine-tuning creates fc_norm with the head: pre-training checkpoints have neither.
    HEAD_KEY_PREFIXES = ("fc_norm.", "head.")
