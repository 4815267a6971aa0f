"""TAMT's global temporal-aware moment tuning (GTMT) with efficient long-short temporal
covariance (ELSTC) (Wang et al., CVPR 2025)."""
from typing import Dict, List, Optional, Sequence

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY
from ..outputs import BackboneOutput, ClipFeatures, as_backbone_output
from .fewshot_utils import class_prototypes, neg_sq_euclidean_to_prototypes


def covariance_pool(x: torch.Tensor) -> torch.Tensor:
    """Centred second moment over positions: [B, C, M] -> [B, C, C] = (x − x̄)(x − x̄)ᵀ / M."""
    xc = x - x.mean(-1, keepdim=True)
    return xc @ xc.transpose(-1, -2) / x.shape[-1]


def isqrt(x: torch.Tensor, iters: int, eps: float = 1e-5) -> torch.Tensor:
    """Approximate square root of SPD matrices [B, C, C] by iSQRT (Li et al., CVPR 2018).

    Pre-normalise by the trace, run `iters` coupled Newton–Schulz steps (the last one computes
    Y only), post-compensate by √trace. Exact for iters → ∞ when ‖I − x/tr(x)‖ < 1.
    """
    eye3 = 3.0 * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    trace = x.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
    a = x / (trace + eps)
    zy = 0.5 * (eye3 - a)
    if iters == 1:
        return a @ zy * trace.sqrt()
    y, z = a @ zy, zy
    for _ in range(iters - 2):
        zy = 0.5 * (eye3 - z @ y)
        y, z = y @ zy, zy @ z
    return 0.5 * y @ (eye3 - z @ y) * trace.sqrt()


def frame_groups(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ELSTC grouping: [N, C, T, S] -> [N*G, C*T/G, S]; group g stacks frames g, g+G, ...
    with channel index c*(T/G) + j for frame g + j*G (the reference's `(c t)` order)."""
    n, c, t, s = x.shape
    return x.view(n, c, t // groups, groups, s).permute(0, 3, 1, 2, 4).reshape(n * groups, -1, s)


@HEAD_REGISTRY.register()
class TAMT(nn.Module):
    """GTMT/ELSTC embedding plus a ProtoNet metric.

    Reads the last token map `hidden[-1]` [N, T', S, D] (T' = HEAD.TAMT_NUM_FRAMES) and
    `pooled` [N, D]: tokens + depthwise temporal conv (k=3) -> LayerNorm `fc_norm2` -> 1x1
    conv/BN/ReLU reductions (HEAD.TAMT_REDUCE_DIMS, last width r) -> G = HEAD.TAMT_GROUPS frame
    groups {g, g+G, ...} whose r·T'/G channels give a covariance over the S positions -> iSQRT
    (HEAD.TAMT_ISQRT_ITERS) -> conv 3x3 (G -> ⌈G/2⌉) and 3x3 stride 2 (-> ⌈G/4⌉), BN/ReLU ->
    `head2` linear to D, added to `pooled`. Support and query pass through together (shared BN
    batch statistics, as in the reference episode batch). Logits: −‖q − p_c‖² to class means
    when classes have several shots, else the dot product q·p_c (reference `metric`).
    Output: {"logits": [N*Q, n_way]}.

    Parameter names follow the reference (`temporal_conv`, `fc_norm2` of its backbone;
    `layer_reduce{i}`, `layer_reduce_bn{i}`, `head2`). Reference bug, fixed by default: it
    reshapes the temporal conv's [N·S, D, T'] output straight to [N, T'·S, D], mixing channels,
    frames and positions; HEAD.TAMT_FIX_CONV_LAYOUT False reproduces it.

    Built from a config or from its arguments (`@configurable`). Not parameter-free: the GTMT/ELSTC layers
    must be meta-trained.
    """

    PARAMETER_FREE = False

    @configurable
    def __init__(self, in_dim: int, reduce_dims: Sequence[int] = (128, 64), groups: int = 4, num_frames: int = 8,
                 isqrt_iters: int = 3, fix_conv_layout: bool = True):
        super().__init__()
        if groups < 1 or num_frames % groups:
            raise ValueError(f"TAMT groups (HEAD.TAMT_GROUPS, {groups}) must divide its frames "
                             f"(HEAD.TAMT_NUM_FRAMES, {num_frames})")
        if isqrt_iters < 1:
            raise ValueError(f"TAMT isqrt_iters (HEAD.TAMT_ISQRT_ITERS): expected >= 1, got {isqrt_iters}")
        if not reduce_dims:
            raise ValueError("TAMT reduce_dims (HEAD.TAMT_REDUCE_DIMS): expected at least one width, got []")
        self.num_frames, self.groups, self.iters = num_frames, groups, isqrt_iters
        self.fix_layout = fix_conv_layout
        self.temporal_conv = nn.Conv1d(in_dim, in_dim, 3, padding=1, groups=in_dim)
        self.fc_norm2 = nn.LayerNorm(in_dim, eps=1e-6)
        g2, g4 = -(-self.groups // 2), -(-self.groups // 4)
        cov_dim = reduce_dims[-1] * self.num_frames // self.groups
        # (in, out, kernel, stride): 1x1 token reductions, then the covariance-map convs.
        widths = [in_dim] + list(reduce_dims)
        specs = [(a, b, 1, 1) for a, b in zip(widths, widths[1:])]
        self.num_token_layers = len(specs)
        specs += [(self.groups, g2, 3, 1), (g2, g4, 3, 2)]
        for i, (c_in, c_out, k, stride) in enumerate(specs, start=1):
            setattr(self, f"layer_reduce{i}", nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False))
            setattr(self, f"layer_reduce_bn{i}", nn.BatchNorm2d(c_out))
        self.num_layers = len(specs)
        self.head2 = nn.Linear(g4 * (-(-cov_dim // 2)) ** 2, in_dim)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        h = cfg.HEAD
        return {"in_dim": in_dim, "reduce_dims": tuple(h.TAMT_REDUCE_DIMS), "groups": h.TAMT_GROUPS,
                "num_frames": h.TAMT_NUM_FRAMES, "isqrt_iters": h.TAMT_ISQRT_ITERS,
                "fix_conv_layout": h.TAMT_FIX_CONV_LAYOUT}

    def _conv_bn_relu(self, x: torch.Tensor, layers: range) -> torch.Tensor:
        for i in layers:
            x = getattr(self, f"layer_reduce_bn{i}")(getattr(self, f"layer_reduce{i}")(x)).relu()
        return x

    def embed(self, out: BackboneOutput) -> torch.Tensor:
        """BackboneOutput with `hidden` -> GTMT embedding [N, D]."""
        if out.hidden is None:
            raise ValueError("TAMT head: needs token maps; set the backbone to return `hidden` "
                             "(its last layer is used)")
        x = out.hidden[-1]
        n, t, s, d = x.shape
        if t != self.num_frames:
            raise ValueError(f"HEAD.TAMT_NUM_FRAMES is {self.num_frames} but the tokens have {t} frames")
        y = self.temporal_conv(x.permute(0, 2, 3, 1).reshape(n * s, d, t))
        y = y.view(n, s, d, t).permute(0, 3, 1, 2) if self.fix_layout else y.reshape(n, t, s, d)
        x = self.fc_norm2(x + y).permute(0, 3, 1, 2)                            # [N, D, T', S]
        x = self._conv_bn_relu(x, range(1, self.num_token_layers + 1))
        x = isqrt(covariance_pool(frame_groups(x, self.groups)), self.iters)
        x = x.view(n, self.groups, *x.shape[-2:])
        x = self._conv_bn_relu(x, range(self.num_token_layers + 1, self.num_layers + 1))
        return out.pooled + self.head2(x.flatten(1))

    def forward(self, support: ClipFeatures, support_labels: torch.Tensor,
                query: ClipFeatures, n_way: int,
                class_text: Optional[List[str]] = None,
                query_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        s_out, q_out = as_backbone_output(support), as_backbone_output(query)
        n_s = s_out.pooled.shape[0]
        z = self.embed(BackboneOutput.cat([s_out, q_out]))
        z_s, z_q = z[:n_s], z[n_s:]
        if support_labels.numel() > n_way:
            return {"logits": neg_sq_euclidean_to_prototypes(z_q, z_s, support_labels, n_way)}
        return {"logits": z_q @ class_prototypes(z_s, support_labels, n_way).t()}
