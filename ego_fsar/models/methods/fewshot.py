"""Few-shot model: a backbone plus a few-shot head (`HEAD.NAME`), for episodic training and testing."""
from typing import Dict, List

import torch

from ..build import MODEL_REGISTRY, build_backbone, build_head
from .base import FlatBackboneModel


@MODEL_REGISTRY.register()
class FewShot(FlatBackboneModel):
    """`MODEL.BACKBONE` + `HEAD.NAME`. Backbone weights keep checkpoint names without a prefix, so a
    classifier pre-trained with MODEL_NAME SlowFast/ResNet/VideoMAE initialises it directly (its
    classification `head.*` keys are reported as unexpected and skipped).

    `untrained_head_keys`: the head's state-dict keys that the last `load_state_dict` did not
    provide (e.g. a classifier's checkpoint); empty before any load.
    """

    def __init__(self, cfg):
        backbone = build_backbone(cfg)
        super().__init__(backbone)
        self.head = build_head(cfg, in_dim=backbone.out_dim)
        self.FIND_UNUSED_PARAMETERS = getattr(self.head, "FIND_UNUSED_PARAMETERS", False)
        self.untrained_head_keys: List[str] = []
        self.register_load_state_dict_post_hook(_record_untrained_head)

    @property
    def fewshot_head(self) -> torch.nn.Module:
        return self.head

    def forward(self, episode: Dict) -> Dict[str, torch.Tensor]:
        """episode: `support`/`query` pathway lists [N*K,C,T,H,W]/[N*Q,C,T,H,W], `support_labels`
        [N*K] in 0..N-1, `n_way`, optional `class_names` and `query_labels` (heads with query-side
        auxiliary losses use them at training). Returns the head's dict (`logits` [N*Q, N])."""
        support = self.backbone(episode["support"])
        query = self.backbone(episode["query"])
        return self.head(support, episode["support_labels"], query, episode["n_way"],
                         class_text=episode.get("class_names"), query_labels=episode.get("query_labels"))


def _record_untrained_head(module: FewShot, incompatible_keys) -> None:
    module.untrained_head_keys = sorted(k for k in incompatible_keys.missing_keys if k.startswith("head."))
