"""Classification heads on pooled backbone features.

Pooling is done by the backbone adaptively (global average per pathway), so any crop size gives
the right shape; PySlowFast's fixed-kernel pooling returns wrong shapes at 112 px.
"""
from typing import Dict, Sequence

import torch
from torch import nn

from ..build import HEAD_REGISTRY


def _class_counts(num_classes) -> Sequence[int]:
    return list(num_classes) if isinstance(num_classes, (list, tuple)) else [num_classes]


@HEAD_REGISTRY.register()
class ResNetBasicHead(nn.Module):
    """Dropout + linear projection, PySlowFast names.

    One class count: `projection` -> {"logits": [B, K]}. Two (EPIC `[97, 300]`):
    `projection_verb`, `projection_noun` -> {"verb": [B, 97], "noun": [B, 300]}.
    Softmax/sigmoid (`MODEL.HEAD_ACT`) is applied by the test loop, never here. With
    MODEL.DETACH_FINAL_FC the pooled features are detached before the projection, so the loss
    trains the projection only (PySlowFast's option).
    """

    SUBHEADS = ("verb", "noun")

    def __init__(self, cfg, in_dim: int):
        super().__init__()
        counts = _class_counts(cfg.MODEL.NUM_CLASSES)
        if len(counts) > len(self.SUBHEADS):
            raise ValueError(f"MODEL.NUM_CLASSES: at most {len(self.SUBHEADS)} heads, got {counts}")
        self.dropout = nn.Dropout(cfg.MODEL.DROPOUT_RATE) if cfg.MODEL.DROPOUT_RATE > 0 else nn.Identity()
        self.detach_final_fc = cfg.MODEL.DETACH_FINAL_FC
        self.multi = len(counts) > 1
        if self.multi:
            for name, k in zip(self.SUBHEADS, counts):
                setattr(self, f"projection_{name}", nn.Linear(in_dim, k))
        else:
            self.projection = nn.Linear(in_dim, counts[0])
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=cfg.MODEL.FC_INIT_STD)
                nn.init.zeros_(m.bias)

    def forward(self, pooled: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.dropout(pooled)
        if self.detach_final_fc:
            x = x.detach()
        if self.multi:
            return {name: getattr(self, f"projection_{name}")(x) for name in self.SUBHEADS
                    if hasattr(self, f"projection_{name}")}
        return {"logits": self.projection(x)}
