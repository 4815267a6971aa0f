"""Non-local block (Wang et al., "Non-local neural networks", CVPR 2018), PySlowFast names."""
from typing import Callable, Dict, Sequence

import torch
from torch import nn

from .norm_helper import NormFactory


def _softmax_affinity(affinity: torch.Tensor, dim_inner: int) -> torch.Tensor:
    return torch.softmax(affinity * dim_inner**-0.5, dim=2)


def _dot_product_affinity(affinity: torch.Tensor, dim_inner: int) -> torch.Tensor:
    return affinity / affinity.shape[2]


# NONLOCAL.INSTANTIATION -> normalisation of the [N, THW, T'H'W'] affinity matrix.
_AFFINITIES: Dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "softmax": _softmax_affinity,
    "dot_product": _dot_product_affinity,
}


class Nonlocal(nn.Module):
    """Residual self-attention over all positions: [B, C, T, H, W] -> [B, C, T, H, W].

    Query `conv_theta`, key `conv_phi` and value `conv_g` (1x1x1, `dim_inner` channels; keys and
    values max-pooled by `pool_size`), output `conv_out` and `bn` added to the input. With `group`
    > 1 the T axis is cut into `group` consecutive chunks that attend only within themselves.
    `bn` is flagged `final_bn` (zero-initialised with RESNET.ZERO_INIT_FINAL_BN, as in PySlowFast).
    """

    def __init__(
        self,
        dim: int,
        dim_inner: int,
        pool_size: Sequence[int],
        instantiation: str,
        norm: NormFactory,
        group: int = 1,
    ):
        super().__init__()
        if instantiation not in _AFFINITIES:
            raise ValueError(
                f"NONLOCAL.INSTANTIATION {instantiation!r} is not supported; expected one of {sorted(_AFFINITIES)}"
            )
        self.dim_inner = dim_inner
        self.group = group
        self.affinity = _AFFINITIES[instantiation]
        self.conv_theta = nn.Conv3d(dim, dim_inner, 1)
        self.conv_phi = nn.Conv3d(dim, dim_inner, 1)
        self.conv_g = nn.Conv3d(dim, dim_inner, 1)
        self.conv_out = nn.Conv3d(dim_inner, dim, 1)
        self.bn = norm(dim)
        self.bn.final_bn = True
        pool_size = tuple(pool_size)
        self.pool = nn.MaxPool3d(pool_size, stride=pool_size) if any(s > 1 for s in pool_size) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.group == 1:
            return self._attend(x)
        b, c, t, h, w = x.shape
        if t % self.group:
            raise ValueError(f"NONLOCAL.GROUP ({self.group}) must divide the temporal length ({t}) of its stage")
        folded = x.transpose(1, 2).reshape(b * self.group, t // self.group, c, h, w).transpose(1, 2)
        return self._attend(folded).transpose(1, 2).reshape(b, t, c, h, w).transpose(1, 2)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        theta = self.conv_theta(x).flatten(2)
        pooled = self.pool(x)
        phi = self.conv_phi(pooled).flatten(2)
        g = self.conv_g(pooled).flatten(2)
        affinity = self.affinity(theta.transpose(1, 2) @ phi, self.dim_inner)
        y = (g @ affinity.transpose(1, 2)).reshape(n, self.dim_inner, t, h, w)
        return x + self.bn(self.conv_out(y))
