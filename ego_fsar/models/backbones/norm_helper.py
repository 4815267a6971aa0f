"""Normalization layers of the video ResNets, chosen by `BN.NORM_TYPE` (PySlowFast's `get_norm`).

`get_norm(cfg)` returns a factory `norm(num_features) -> nn.Module` with PySlowFast's fixed
eps 1e-5 and momentum 0.1. Every choice keeps BatchNorm's state-dict names (`weight`, `bias`,
`running_mean`, `running_var`, `num_batches_tracked`), except `sub_batchnorm`, which has
PySlowFast's `weight`, `bias`, `bn.*`, `split_bn.*`.

`sync_batchnorm` builds plain BatchNorm; a multi-process GPU training job converts it with torch's
`nn.SyncBatchNorm.convert_sync_batchnorm` (`convert_sync_batchnorm` here, called by the trainer's
model build). On the CPU (gloo) it stays plain BatchNorm: torch's SyncBatchNorm trains on GPUs only,
so each CPU process normalises with the statistics of its own share of the batch.
"""
from functools import partial
from typing import Callable, Optional

import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch import nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1

NormFactory = Callable[[int], nn.Module]


class SubBatchNorm3d(nn.Module):
    """BN whose training statistics are computed on `num_splits` sub-batches separately.

    Training: sample i of [B, C, T, H, W] is normalised with the statistics of split i % num_splits
    (`split_bn`). Switching to eval mode aggregates the splits' running statistics into `bn`,
    which normalises at test time. One affine `weight`/`bias` is shared by both.
    """

    def __init__(self, num_features: int, num_splits: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM):
        super().__init__()
        self.num_splits = num_splits
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.bn = nn.BatchNorm3d(num_features, eps=eps, momentum=momentum, affine=False)
        self.split_bn = nn.BatchNorm3d(num_features * num_splits, eps=eps, momentum=momentum, affine=False)

    def train(self, mode: bool = True) -> "SubBatchNorm3d":
        if self.training and not mode:
            self.aggregate_stats()
        return super().train(mode)

    @torch.no_grad()
    def aggregate_stats(self) -> None:
        """Set `bn`'s running mean/var to those of the union of the splits."""
        means = self.split_bn.running_mean.view(self.num_splits, -1)
        variances = self.split_bn.running_var.view(self.num_splits, -1)
        mean = means.mean(0)
        self.bn.running_mean.copy_(mean)
        self.bn.running_var.copy_(variances.mean(0) + (means - mean).pow(2).mean(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            n, c = x.shape[:2]
            if n % self.num_splits:
                raise ValueError(f"BN.NUM_SPLITS ({self.num_splits}) must divide the per-process batch size ({n})")
            x = self.split_bn(x.reshape(n // self.num_splits, c * self.num_splits, *x.shape[2:])).reshape(x.shape)
        else:
            x = self.bn(x)
        shape = (-1,) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)


# Modules whose `weight` is a per-channel norm scale (initialised to 1, or 0 for final norms).
NORM_LAYERS = (nn.BatchNorm3d, nn.SyncBatchNorm, SubBatchNorm3d)


def _sync_group(group_size: int, world: int) -> Optional["dist.ProcessGroup"]:
    """This process's group of `group_size` consecutive ranks out of `world` (None: all ranks). Every
    process must call it (torch creates all the subgroups on every rank)."""
    if group_size >= world:
        return None
    if world % group_size:
        raise ValueError(f"BN.NUM_SYNC_DEVICES ({group_size}) must divide the number of processes ({world})")
    return dist.new_subgroups(group_size)[0]


def convert_sync_batchnorm(model: nn.Module, cfg: CfgNode) -> nn.Module:
    """With BN.NORM_TYPE sync_batchnorm in a GPU job of several processes: `model` with every BatchNorm
    replaced by torch's SyncBatchNorm (same parameters and statistics) over groups of BN.NUM_SYNC_DEVICES
    consecutive ranks, or over all ranks with BN.GLOBAL_SYNC (PySlowFast's semantics). Otherwise
    (another norm type, the CPU, one process, groups of one) `model` unchanged."""
    if cfg.BN.NORM_TYPE != "sync_batchnorm" or cfg.NUM_GPUS == 0 or not dist.is_initialized():
        return model
    world = dist.get_world_size()
    size = world if cfg.BN.GLOBAL_SYNC else min(cfg.BN.NUM_SYNC_DEVICES, world)
    if size <= 1:
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group=_sync_group(size, world))


def _batchnorm(cfg) -> Callable[..., nn.Module]:
    return nn.BatchNorm3d


def _sub_batchnorm(cfg) -> Callable[..., nn.Module]:
    return partial(SubBatchNorm3d, num_splits=cfg.BN.NUM_SPLITS)


# sync_batchnorm builds BatchNorm; `convert_sync_batchnorm` turns it into SyncBatchNorm for GPU training.
_NORM_TYPES = {"batchnorm": _batchnorm, "sub_batchnorm": _sub_batchnorm, "sync_batchnorm": _batchnorm}


def get_norm(cfg: CfgNode) -> NormFactory:
    """The norm layer factory of `BN.NORM_TYPE`: `norm(num_features) -> nn.Module`."""
    if cfg.BN.NORM_TYPE not in _NORM_TYPES:
        raise ValueError(f"BN.NORM_TYPE {cfg.BN.NORM_TYPE!r} is not supported; expected one of {sorted(_NORM_TYPES)}")
    layer = _NORM_TYPES[cfg.BN.NORM_TYPE](cfg)
    return partial(layer, eps=BN_EPS, momentum=BN_MOMENTUM)
