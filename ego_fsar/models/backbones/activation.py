"""Activation factories of the video ResNets' blocks (stems, residual blocks, fusions): each block takes
`activation() -> nn.Module`, as its `norm(num_features)`, instead of a hard-coded ReLU."""
from functools import partial
from typing import Callable

from torch import nn

ActivationFactory = Callable[[], nn.Module]


def relu(inplace: bool = True) -> ActivationFactory:
    """PySlowFast's activation: ReLU, in place when RESNET.INPLACE_RELU."""
    return partial(nn.ReLU, inplace=inplace)
