"""VideoMAE's fine-tuning classifier (MODEL_NAME VideoMAE): VideoViT plus VideoMAE's `head`.

State-dict names are VideoMAE's own (`patch_embed.*`, `blocks.*`, `fc_norm.*`, `head.weight`,
`head.bias`), so a VideoMAE `.pth` (`{"model": ...}`) loads with no missing or unexpected keys.
"""
from typing import Dict

import torch
from torch import nn

from ..build import HEAD_REGISTRY, MODEL_REGISTRY
from .classifier import VideoClassifier


@HEAD_REGISTRY.register()
class VideoMAEHead(nn.Linear):
    """Dropout (MODEL.DROPOUT_RATE) then VideoMAE's linear `head`, whose weight and bias are this
    module's own. Initialised as VideoMAE: truncated normal (std 0.02) times VIT.HEAD_INIT_SCALE,
    zero bias. `forward(pooled [B, D]) -> {"logits": [B, K]}`; MODEL.DETACH_FINAL_FC detaches `pooled`
    so that the loss trains the head only."""

    def __init__(self, cfg, in_dim: int):
        num_classes = cfg.MODEL.NUM_CLASSES
        if not isinstance(num_classes, int):
            raise ValueError(f"MODEL.NUM_CLASSES: VideoMAE has one head, expected an int, got {num_classes!r}")
        super().__init__(in_dim, num_classes)
        self.dropout = nn.Dropout(cfg.MODEL.DROPOUT_RATE)
        self.detach_final_fc = cfg.MODEL.DETACH_FINAL_FC
        with torch.no_grad():
            nn.init.trunc_normal_(self.weight, std=0.02).mul_(cfg.VIT.HEAD_INIT_SCALE)
            nn.init.zeros_(self.bias)

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
