"""Classification heads on pooled backbone features.

Pooling is done by the backbone adaptively (global average per pathway), so any crop size gives
the right shape; PySlowFast's fixed-kernel pooling returns wrong shapes at 112 px.
"""
from typing import Dict, Sequence, Union

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY


def _class_counts(num_classes: Union[int, Sequence[int]]) -> Sequence[int]:
    return list(num_classes) if isinstance(num_classes, (list, tuple)) else [num_classes]


@HEAD_REGISTRY.register()
class ResNetBasicHead(nn.Module):
    """Dropout + linear projection, PySlowFast names.

    One class count: `projection` -> {"logits": [B, K]}. Two (EPIC `[97, 300]`):
    `projection_verb`, `projection_noun` -> {"verb": [B, 97], "noun": [B, 300]}.
    Softmax/sigmoid (`MODEL.HEAD_ACT`) is applied by the test loop, never here. With
    MODEL.DETACH_FINAL_FC the pooled features are detached before the projection, so the loss
    trains the projection only (PySlowFast's option). Built from a config or from its arguments
    (`@configurable`).
    """

    SUBHEADS = ("verb", "noun")

    @configurable
    def __init__(self, in_dim: int, num_classes: Union[int, Sequence[int]] = 400, dropout_rate: float = 0.5,
                 detach_final_fc: bool = False, fc_init_std: float = 0.01):
        super().__init__()
        counts = _class_counts(num_classes)
        if len(counts) > len(self.SUBHEADS):
            raise ValueError(f"num_classes (MODEL.NUM_CLASSES): at most {len(self.SUBHEADS)} heads, got {counts}")
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()
        self.detach_final_fc = detach_final_fc
        self.multi = len(counts) > 1
        if self.multi:
            for name, k in zip(self.SUBHEADS, counts):
                setattr(self, f"projection_{name}", nn.Linear(in_dim, k))
        else:
            self.projection = nn.Linear(in_dim, counts[0])
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=fc_init_std)
                nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        m = cfg.MODEL
        return {"in_dim": in_dim, "num_classes": m.NUM_CLASSES, "dropout_rate": m.DROPOUT_RATE,
                "detach_final_fc": m.DETACH_FINAL_FC, "fc_init_std": m.FC_INIT_STD}

    def forward(self, pooled: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.dropout(pooled)
        if self.detach_final_fc:
            x = x.detach()
        if self.multi:
            return {name: getattr(self, f"projection_{name}")(x) for name in self.SUBHEADS
                    if hasattr(self, f"projection_{name}")}
        return {"logits": self.projection(x)}
