"""Stem (`s1`) of the video ResNets: conv T x 7 x 7 with spatial stride 2, norm, activation, max-pool."""
from typing import List, Sequence

import torch
from torch import nn

from .activation import ActivationFactory, relu
from .norm_helper import NormFactory


class ResNetBasicStem(nn.Module):
    """[B, C_in, T, H, W] -> [B, C_out, T, H/4, W/4] (`conv`, `bn`, `relu`, `pool_layer`)."""

    def __init__(self, dim_in: int, dim_out: int, temp_kernel: int, norm: NormFactory,
                 activation: ActivationFactory = relu()):
        super().__init__()
        self.conv = nn.Conv3d(
            dim_in, dim_out, (temp_kernel, 7, 7), stride=(1, 2, 2), padding=(temp_kernel // 2, 3, 3), bias=False
        )
        self.bn = norm(dim_out)
        self.relu = activation()
        self.pool_layer = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_layer(self.relu(self.bn(self.conv(x))))


class VideoModelStem(nn.Module):
    """One `ResNetBasicStem` per pathway, named `pathway{p}_stem`; maps a list of pathways to a new list."""

    def __init__(
        self,
        dim_in: Sequence[int],
        dim_out: Sequence[int],
        temp_kernels: Sequence[int],
        norm: NormFactory,
        activation: ActivationFactory = relu(),
    ):
        super().__init__()
        for p, (d_in, d_out, t) in enumerate(zip(dim_in, dim_out, temp_kernels)):
            self.add_module(f"pathway{p}_stem", ResNetBasicStem(d_in, d_out, t, norm, activation))

    def forward(self, x: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [stem(t) for stem, t in zip(self.children(), x)]
