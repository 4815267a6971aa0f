"""Few-shot model: a backbone plus a few-shot head (`HEAD.NAME`), for episodic training and testing."""
from typing import Dict, List, Optional

import torch

from ..build import MODEL_REGISTRY, build_backbone, build_head
from ..outputs import BackboneOutput
from .base import FlatBackboneModel


@MODEL_REGISTRY.register()
class FewShot(FlatBackboneModel):
    """`MODEL.BACKBONE` + `HEAD.NAME`. Backbone weights keep checkpoint names without a prefix, so a
    classifier pre-trained with MODEL_NAME SlowFast/ResNet/VideoMAE initialises it directly (its
    classification `head.*` keys are reported as unexpected and skipped).
    """

    def __init__(self, cfg):
        backbone = build_backbone(cfg)
        super().__init__(backbone)
        self.head = build_head(cfg, in_dim=backbone.out_dim)

    @property
    def fewshot_head(self) -> torch.nn.Module:
        return self.head

    def forward(self, episode: Dict) -> Dict[str, torch.Tensor]:
        """episode: `support`/`query` pathway lists [N*K,C,T,H,W]/[N*Q,C,T,H,W], `support_labels`
        [N*K] in 0..N-1, `n_way`, optional `class_names`. Returns the head's dict (`logits` [N*Q, N])."""
        support = self.backbone(episode["support"])
        query = self.backbone(episode["query"])
        return self.classify(support, episode["support_labels"], query, episode["n_way"],
                             episode.get("class_names"))

    def classify(self, support: BackboneOutput, support_labels: torch.Tensor, query: BackboneOutput,
                 n_way: int, class_names: Optional[List[str]] = None) -> Dict[str, torch.Tensor]:
        """Run the head on backbone outputs (e.g. from a feature cache)."""
        return self.head(support, support_labels, query, n_way, class_text=class_names)
