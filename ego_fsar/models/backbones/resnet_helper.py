"""Residual blocks and stages of the video ResNets, with PySlowFast's names and initialisation.

A block is `branch1`/`branch1_bn` (projection shortcut, when the shape changes) plus `branch2`,
the transform: bottleneck `a` (T x 1 x 1), `b` (1 x 3 x 3), `c` (1 x 1 x 1), or basic `a`
(T x 3 x 3), `b` (1 x 3 x 3), each followed by its `*_bn`.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import torch
from fvcore.nn.weight_init import c2_msra_fill
from torch import nn

from .activation import ActivationFactory, relu
from .nonlocal_helper import Nonlocal
from .norm_helper import NORM_LAYERS, NormFactory


def bottleneck_transform(
    dim_in: int, dim_out: int, temp_kernel: int, stride: int, dim_inner: int, num_groups: int,
    stride_1x1: bool, activation: ActivationFactory, dilation: int, norm: NormFactory,
) -> nn.Sequential:
    """Tx1x1, 1x3x3 (grouped, dilated), 1x1x1; the spatial stride sits on `a` if `stride_1x1` else on `b`."""
    stride_a, stride_b = (stride, 1) if stride_1x1 else (1, stride)
    c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
    c.final_conv = True
    c_bn = norm(dim_out)
    c_bn.final_bn = True
    return nn.Sequential(OrderedDict(
        a=nn.Conv3d(dim_in, dim_inner, (temp_kernel, 1, 1), stride=(1, stride_a, stride_a),
                    padding=(temp_kernel // 2, 0, 0), bias=False),
        a_bn=norm(dim_inner),
        a_relu=activation(),
        b=nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride_b, stride_b), padding=(0, dilation, dilation),
                    dilation=(1, dilation, dilation), groups=num_groups, bias=False),
        b_bn=norm(dim_inner),
        b_relu=activation(),
        c=c,
        c_bn=c_bn,
    ))


def basic_transform(
    dim_in: int, dim_out: int, temp_kernel: int, stride: int, dim_inner: int, num_groups: int,
    stride_1x1: bool, activation: ActivationFactory, dilation: int, norm: NormFactory,
) -> nn.Sequential:
    """Tx3x3 (strided), 1x3x3 (dilated); `dim_inner` and `stride_1x1` do not apply."""
    if num_groups != 1:
        raise ValueError(f"RESNET.NUM_GROUPS must be 1 with basic_transform, got {num_groups}")
    b = nn.Conv3d(dim_out, dim_out, (1, 3, 3), padding=(0, dilation, dilation), dilation=(1, dilation, dilation),
                  bias=False)
    b.final_conv = True
    b_bn = norm(dim_out)
    b_bn.final_bn = True
    return nn.Sequential(OrderedDict(
        a=nn.Conv3d(dim_in, dim_out, (temp_kernel, 3, 3), stride=(1, stride, stride),
                    padding=(temp_kernel // 2, 1, 1), bias=False),
        a_bn=norm(dim_out),
        a_relu=activation(),
        b=b,
        b_bn=b_bn,
    ))


# RESNET.TRANS_FUNC -> builder of a block's residual branch (`branch2`).
TRANS_FUNCS: Dict[str, Callable[..., nn.Module]] = {
    "bottleneck_transform": bottleneck_transform,
    "basic_transform": basic_transform,
}


class ResBlock(nn.Module):
    """activation(shortcut(x) + branch2(x)): [B, C_in, T, H, W] -> [B, C_out, T, H/stride, W/stride]."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, branch2: nn.Module, norm: NormFactory,
                 activation: ActivationFactory = relu()):
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = norm(dim_out)
        self.branch2 = branch2
        self.relu = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return self.relu(shortcut + self.branch2(x))


def block_temp_kernels(basis: Sequence[int], depth: int, num_temp: int) -> List[int]:
    """Temporal kernel of each of `depth` blocks: `basis` cycled over the first `num_temp`, 1 after."""
    return [basis[i % len(basis)] if i < num_temp else 1 for i in range(depth)]


@dataclass
class PathwayStage:
    """One pathway of one residual stage; `temp_kernels` has one entry per block."""

    dim_in: int
    dim_out: int
    dim_inner: int
    temp_kernels: List[int]
    stride: int = 1
    dilation: int = 1
    nonlocal_inds: Sequence[int] = ()
    nonlocal_group: int = 1
    nonlocal_pool: Sequence[int] = (1, 1, 1)


class ResStage(nn.Module):
    """Residual blocks `pathway{p}_res{i}` (and non-local blocks `pathway{p}_nonlocal{i}` after
    the blocks listed in `nonlocal_inds`) for each pathway; maps a list of pathways to a new list.
    The first block of a pathway carries its stride. Blocks take their `norm` and `activation` factories."""

    def __init__(
        self,
        pathways: Sequence[PathwayStage],
        trans_func: str,
        num_groups: int,
        norm: NormFactory,
        stride_1x1: bool = False,
        activation: ActivationFactory = relu(),
        instantiation: str = "softmax",
    ):
        super().__init__()
        if trans_func not in TRANS_FUNCS:
            raise ValueError(
                f"RESNET.TRANS_FUNC {trans_func!r} is not supported; expected one of {sorted(TRANS_FUNCS)}"
            )
        self.blocks: List[List[str]] = []
        for p, spec in enumerate(pathways):
            names = []
            for i, temp_kernel in enumerate(spec.temp_kernels):
                dim_in, stride = (spec.dim_in, spec.stride) if i == 0 else (spec.dim_out, 1)
                branch2 = TRANS_FUNCS[trans_func](
                    dim_in, spec.dim_out, temp_kernel, stride, spec.dim_inner, num_groups,
                    stride_1x1, activation, spec.dilation, norm,
                )
                names.append(f"pathway{p}_res{i}")
                self.add_module(names[-1], ResBlock(dim_in, spec.dim_out, stride, branch2, norm, activation))
                if i in spec.nonlocal_inds:
                    names.append(f"pathway{p}_nonlocal{i}")
                    self.add_module(names[-1], Nonlocal(spec.dim_out, spec.dim_out // 2, spec.nonlocal_pool,
                                                        instantiation, norm, spec.nonlocal_group))
            self.blocks.append(names)

    def forward(self, x: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        out = []
        for names, t in zip(self.blocks, x):
            for name in names:
                t = self._modules[name](t)
            out.append(t)
        return out


@torch.no_grad()
def init_weights(model: nn.Module, zero_init_final_bn: bool, zero_init_final_conv: bool) -> None:
    """PySlowFast's ResNet initialisation: MSRA fill of every Conv3d (zeros for convs flagged
    `final_conv` when `zero_init_final_conv`), norm scales 1 (0 for norms flagged `final_bn` when
    `zero_init_final_bn`) and shifts 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            if zero_init_final_conv and getattr(m, "final_conv", False):
                m.weight.zero_()
            else:
                c2_msra_fill(m)
        elif isinstance(m, NORM_LAYERS) and m.weight is not None:
            m.weight.fill_(0.0 if zero_init_final_bn and getattr(m, "final_bn", False) else 1.0)
            m.bias.zero_()
