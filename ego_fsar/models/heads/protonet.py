"""ProtoNet / TSN++ few-shot head on frame-averaged clip features."""
from typing import Dict, List, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY
from ..outputs import BackboneOutput, ClipFeatures, as_backbone_output
from .fewshot_utils import mean_cosine_to_classes, neg_sq_euclidean_to_prototypes

_METRICS = {
    "cosine": mean_cosine_to_classes,
    "euclidean": neg_sq_euclidean_to_prototypes,
}


@HEAD_REGISTRY.register()
class ProtoNet(nn.Module):
    """Clip feature = mean of `frames` [N, T, D] -> [N, D].

    HEAD.METRIC "cosine" (TSN++ of the OTAM/TRX/CLIP-FSAR code): cosine (reference eps 0.01) of
    each query to each support, averaged over a class's shots, times a learnable scale
    initialised to HEAD.INIT_SCALE. "euclidean" (ProtoNet): −‖q − p_c‖² to the class mean p_c.
    Output: {"logits": [N*Q, n_way]}. Built from a config or from its arguments (`@configurable`).

    Parameter-free: the cosine scale is learnable but positive, so it never changes a prediction
    (the arg-max); the head tests the same on any backbone without meta-training.
    Episode batches: inputs with a leading episode dimension E (frames [E, N, T, D], labels [E, N*K])
    give logits [E, N*Q, n_way]. `reduce_clips` gives what it reads of each clip, once for a cache.
    """

    PARAMETER_FREE = True
    EPISODE_BATCH = True

    @configurable
    def __init__(self, in_dim: int, metric: str = "cosine", init_scale: float = 10.0):
        super().__init__()
        if metric not in _METRICS:
            raise ValueError(f"ProtoNet metric (HEAD.METRIC): expected one of {sorted(_METRICS)}, got {metric!r}")
        self.metric = _METRICS[metric]
        self.logit_scale = nn.Parameter(torch.tensor(float(init_scale))) if metric == "cosine" else None

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        return {"in_dim": in_dim, "metric": cfg.HEAD.METRIC, "init_scale": cfg.HEAD.INIT_SCALE}

    @staticmethod
    def reduce_clips(clips: BackboneOutput) -> BackboneOutput:
        """The part of clip features [N, ...] that `forward` reads: `frames` averaged over time [N, 1, D]
        (the same logits; a feature cache stores this instead of every frame)."""
        return BackboneOutput(clips.pooled, clips.frames.mean(-2, keepdim=True))

    def forward(self, support: ClipFeatures, support_labels: torch.Tensor,
                query: ClipFeatures, n_way: int,
                class_text: Optional[List[str]] = None,
                query_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        s = as_backbone_output(support).frames.mean(-2)
        q = as_backbone_output(query).frames.mean(-2)
        logits = self.metric(q, s, support_labels, n_way)
        if self.logit_scale is not None:
            logits = self.logit_scale * logits
        return {"logits": logits}
