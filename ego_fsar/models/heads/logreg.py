"""Support-set logistic regression, the evaluator of MM-CDFSL (Hatano et al., ECCV 2024)."""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from sklearn.linear_model import LogisticRegression
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY
from ..outputs import BackboneOutput, ClipFeatures, as_backbone_output
from .fewshot_utils import check_support_labels


@HEAD_REGISTRY.register()
class LogReg(nn.Module):
    """Per episode, fit multinomial L-BFGS logistic regression (C = HEAD.LOGREG_C, at most
    HEAD.LOGREG_MAX_ITER iterations, random_state 0) on the support `pooled` features [N*K, D]
    (L2-normalised if HEAD.LOGREG_NORMALIZE), on CPU with scikit-learn.

    `query` may be one BackboneOutput/tensor or a list of views of the same queries (MM-CDFSL's
    masked views, TEST.NUM_MASKED_VIEWS; `QUERY_VIEWS`): class probabilities are averaged over views. Returns
    {"logits": log of the (averaged) probabilities [N*Q, n_way]}, no gradient: an evaluation
    head. Built from a config or from its arguments (`@configurable`).

    Parameter-free: no parameters; the classifier is fitted on each episode's support set.
    """

    PARAMETER_FREE = True
    QUERY_VIEWS = True

    @configurable
    def __init__(self, in_dim: int, c: float = 1.0, max_iter: int = 1000, normalize: bool = False):
        super().__init__()
        self.c, self.max_iter, self.normalize = c, max_iter, normalize

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        h = cfg.HEAD
        return {"in_dim": in_dim, "c": h.LOGREG_C, "max_iter": h.LOGREG_MAX_ITER, "normalize": h.LOGREG_NORMALIZE}

    def _features(self, x) -> np.ndarray:
        pooled = as_backbone_output(x).pooled
        if pooled.requires_grad:
            raise RuntimeError("LogReg head: features require grad; it is an evaluation head "
                               "(HEAD.NAME 'LogReg') and cannot be meta-trained")
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return pooled.float().cpu().numpy()

    def forward(self, support: ClipFeatures, support_labels: torch.Tensor,
                query: Union[BackboneOutput, torch.Tensor, Sequence[ClipFeatures]],
                n_way: int,
                class_text: Optional[List[str]] = None,
                query_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        check_support_labels(support_labels, n_way)
        views = query if isinstance(query, (list, tuple)) else [query]
        clf = LogisticRegression(C=self.c, solver="lbfgs", max_iter=self.max_iter, random_state=0)
        clf.fit(self._features(support), support_labels.cpu().numpy())
        prob = np.mean([clf.predict_proba(self._features(v)) for v in views], axis=0)
        ref = as_backbone_output(views[0]).pooled
        logits = torch.from_numpy(prob).to(device=ref.device, dtype=torch.float32).clamp_min(1e-12).log()
        return {"logits": logits}
