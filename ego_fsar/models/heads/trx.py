"""TRX: temporal-relational cross-transformers (Perrett et al., CVPR 2021)."""
import math
from itertools import combinations
from typing import Dict, List, Optional, Sequence, Union

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY
from ..outputs import ClipFeatures, as_backbone_output
from .fewshot_utils import check_support_labels

# Scale of TRX's sinusoid position encoding.
PE_SCALE = 0.1


def sinusoid_encoding(length: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    """[length, dim] table: sin(p / 10000^(2i/dim)) in even channels, cos in odd ones, times scale."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table * scale


def frame_tuples(t: int, cardinality: int, device: Optional[Union[torch.device, str]] = None) -> torch.Tensor:
    """All ordered frame-index tuples (combinations) of a T-frame clip: [C(T, cardinality), cardinality]."""
    return torch.tensor(list(combinations(range(t), cardinality)), dtype=torch.long, device=device)


class TemporalCrossTransformer(nn.Module):
    """TRX for one tuple cardinality.

    Each clip [N, T, D] (plus position encoding) becomes P = C(T, cardinality) concatenated frame
    tuples; keys (`k_linear` then `norm_k`) and values (`v_linear`) are `out_dim` wide. For each
    query tuple and class, softmax attention over all tuples of all that class's supports builds a
    query-specific prototype; distance = ‖V_q − prototype‖²_F / P. Returns −distance [Q, n_way].
    """

    def __init__(self, in_dim: int, cardinality: int, out_dim: int, dropout: float):
        super().__init__()
        self.cardinality = cardinality
        self.pe_dropout = nn.Dropout(dropout)
        self.k_linear = nn.Linear(in_dim * cardinality, out_dim)
        self.v_linear = nn.Linear(in_dim * cardinality, out_dim)
        self.norm_k = nn.LayerNorm(out_dim)

    def _tuples(self, x: torch.Tensor) -> torch.Tensor:
        t, d = x.shape[1], x.shape[2]
        x = self.pe_dropout(x + sinusoid_encoding(t, d, PE_SCALE).to(x))
        return x[:, frame_tuples(t, self.cardinality, x.device)].flatten(2)

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                n_way: int) -> torch.Tensor:
        s, q = self._tuples(support), self._tuples(query)
        k_s, v_s = self.norm_k(self.k_linear(s)), self.v_linear(s)
        k_q, v_q = self.norm_k(self.k_linear(q)), self.v_linear(q)
        scores = torch.einsum("qid,sjd->qisj", k_q, k_s) / math.sqrt(k_q.shape[-1])
        in_class = support_labels.unsqueeze(0) == torch.arange(n_way, device=s.device).unsqueeze(1)
        scores = scores.unsqueeze(1).masked_fill(~in_class[None, :, None, :, None], float("-inf"))
        attn = scores.flatten(-2).softmax(-1).view_as(scores)  # [Q, n_way, P, S, P]
        prototypes = torch.einsum("qcisj,sjd->qcid", attn, v_s)
        return -(v_q.unsqueeze(1) - prototypes).pow(2).sum((-2, -1)) / q.shape[1]


@HEAD_REGISTRY.register()
class TRX(nn.Module):
    """Temporal-relational cross-transformers on `frames` [N, T, D], one per cardinality in
    HEAD.TRX_CARDINALITIES (default pairs and triples), widths HEAD.TRX_DIM, position-encoding
    dropout HEAD.TRX_DROPOUT; logits = mean over cardinalities. Matches the TRX code's
    `TemporalCrossTransformer` except that its unused `norm_v` is not created.
    Output: {"logits": [N*Q, n_way]}. Built from a config or from its arguments (`@configurable`).

    Not parameter-free: the key/value projections must be meta-trained.
    """

    PARAMETER_FREE = False

    @configurable
    def __init__(self, in_dim: int, cardinalities: Sequence[int] = (2, 3), dim: int = 1152, dropout: float = 0.1):
        super().__init__()
        if not cardinalities:
            raise ValueError("TRX cardinalities (HEAD.TRX_CARDINALITIES): expected at least one tuple size, got []")
        self.transformers = nn.ModuleList(TemporalCrossTransformer(in_dim, c, dim, dropout) for c in cardinalities)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        h = cfg.HEAD
        return {"in_dim": in_dim, "cardinalities": tuple(h.TRX_CARDINALITIES), "dim": h.TRX_DIM,
                "dropout": h.TRX_DROPOUT}

    def forward(self, support: ClipFeatures, support_labels: torch.Tensor,
                query: ClipFeatures, n_way: int,
                class_text: Optional[List[str]] = None,
                query_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        s = as_backbone_output(support).frames
        q = as_backbone_output(query).frames
        check_support_labels(support_labels, n_way)
        if max(t.cardinality for t in self.transformers) > min(s.shape[1], q.shape[1]):
            raise ValueError(f"HEAD.TRX_CARDINALITIES {[t.cardinality for t in self.transformers]}: "
                             f"tuples longer than the {min(s.shape[1], q.shape[1])} frames per clip")
        logits = torch.stack([t(s, support_labels, q, n_way) for t in self.transformers]).mean(0)
        return {"logits": logits}
