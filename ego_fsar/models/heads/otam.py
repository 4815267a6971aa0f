"""OTAM: ordered temporal alignment (Cao et al., CVPR 2020)."""
from typing import Dict, List, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY
from ..outputs import ClipFeatures, as_backbone_output
from .fewshot_utils import class_average, otam_distance


@HEAD_REGISTRY.register()
class OTAM(nn.Module):
    """Symmetric soft-DTW-style alignment of query and support `frames` [N, T, D].

    Frame distance 1 − x·y / (‖x‖‖y‖ + 0.01); alignment cost OTAM(D) + OTAM(Dᵀ) with soft-min
    temperature HEAD.OTAM_LAMBDA (see `fewshot_utils.otam_cumulative_distance`); logits = −cost
    averaged over each class's shots. With λ = 0.1 this reproduces the logits of the OTAM/TRX
    code's `OTAM_cum_dist` head (CLIP-FSAR's `CNN_OTAM`).
    Output: {"logits": [N*Q, n_way]}. Built from a config or from its arguments (`@configurable`).

    Parameter-free: no parameters.
    Episode batches: inputs with a leading episode dimension E (frames [E, N, T, D], labels [E, N*K])
    give logits [E, N*Q, n_way].
    """

    PARAMETER_FREE = True
    EPISODE_BATCH = True

    @configurable
    def __init__(self, in_dim: int, lam: float = 0.1):
        super().__init__()
        self.lam = lam

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        return {"in_dim": in_dim, "lam": cfg.HEAD.OTAM_LAMBDA}

    def forward(self, support: ClipFeatures, support_labels: torch.Tensor,
                query: ClipFeatures, n_way: int,
                class_text: Optional[List[str]] = None,
                query_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        s = as_backbone_output(support).frames
        q = as_backbone_output(query).frames
        return {"logits": -class_average(otam_distance(q, s, self.lam), support_labels, n_way)}
