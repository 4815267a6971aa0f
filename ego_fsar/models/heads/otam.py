"""OTAM: ordered temporal alignment (Cao et al., CVPR 2020)."""
from typing import Dict, List, Optional

import torch
from torch import nn

from ..build import HEAD_REGISTRY
from ..outputs import as_backbone_output
from .fewshot_utils import class_average, otam_distance


@HEAD_REGISTRY.register()
class OTAM(nn.Module):
    """Symmetric soft-DTW-style alignment of query and support `frames` [N, T, D].

    Frame distance 1 − x·y / (‖x‖‖y‖ + 0.01); alignment cost OTAM(D) + OTAM(Dᵀ) with soft-min
    temperature HEAD.OTAM_LAMBDA (see `fewshot_utils.otam_cumulative_distance`); logits = −cost
    averaged over each class's shots. With λ = 0.1 this reproduces the logits of the OTAM/TRX
    code's `OTAM_cum_dist` head (CLIP-FSAR's `CNN_OTAM`).
    Output: {"logits": [N*Q, n_way]}.

    Parameter-free: no parameters.
    Episode batches: inputs with a leading episode dimension E (frames [E, N, T, D], labels [E, N*K])
    give logits [E, N*Q, n_way].
    """

    PARAMETER_FREE = True
    EPISODE_BATCH = True

    def __init__(self, cfg, in_dim: int):
        super().__init__()
        self.lam = cfg.HEAD.OTAM_LAMBDA

    def forward(self, support, support_labels: torch.Tensor, query, n_way: int,
                class_text: Optional[List[str]] = None,
                query_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        s = as_backbone_output(support).frames
        q = as_backbone_output(query).frames
        return {"logits": -class_average(otam_distance(q, s, self.lam), support_labels, n_way)}
