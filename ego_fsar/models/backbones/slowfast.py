"""SlowFast and single-pathway ResNet (Slow, I3D, C2D) video backbones.

Feichtenhofer et al., "SlowFast networks for video recognition", ICCV 2019. The trunks are
PySlowFast's `SlowFast` and `ResNet` models without their head, with the same parameter names
and shapes (`s1.pathway0_stem.conv.weight`, `s1_fuse.conv_f2s.weight`,
`s4.pathway1_res22.branch2.c_bn.running_var`, ...), so PySlowFast checkpoints load 1:1 into a
classifier that adds `head.projection`. Pooling is adaptive, so any crop size works.
"""
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from ..build import BACKBONE_REGISTRY
from ..outputs import BackboneOutput
from .activation import ActivationFactory, relu
from .norm_helper import NormFactory, get_norm
from .resnet_helper import PathwayStage, ResStage, block_temp_kernels, init_weights
from .stem_helper import VideoModelStem

# RESNET.DEPTH -> number of blocks of res2..res5.
_MODEL_STAGE_DEPTH = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

# MODEL.ARCH -> temporal kernel basis of the stem and of res2..res5, one list per pathway.
_TEMPORAL_KERNEL_BASIS = {
    "2d": [[[1]], [[1]], [[1]], [[1]], [[1]]],
    "c2d": [[[1]], [[1]], [[1]], [[1]], [[1]]],
    "i3d": [[[5]], [[3]], [[3, 1]], [[3, 1]], [[1, 3]]],
    "slow": [[[1]], [[1]], [[1]], [[3]], [[3]]],
    "slowfast": [[[1], [5]], [[1], [3]], [[1], [3]], [[3], [3]], [[3], [3]]],
}

# MODEL.ARCH -> max-pool kernel (and stride) applied after res2, one per pathway.
_POOL1 = {
    "2d": [[1, 1, 1]],
    "c2d": [[2, 1, 1]],
    "i3d": [[2, 1, 1]],
    "slow": [[1, 1, 1]],
    "slowfast": [[1, 1, 1], [1, 1, 1]],
}

_STAGES = ("s1", "s2", "s3", "s4", "s5")


def _per_pathway(cfg, key: str, stage: int, num_pathways: int) -> list:
    """Entry `stage` of a per-stage, per-pathway key; a single entry applies to every pathway."""
    group, name = key.split(".")
    per_stage = cfg[group][name]
    if len(per_stage) != 4:
        raise ValueError(f"{key} needs one entry per stage res2..res5, got {per_stage}")
    values = list(per_stage[stage])
    if len(values) == 1:
        return values * num_pathways
    if len(values) < num_pathways:
        raise ValueError(f"{key}[{stage}] = {values}: expected 1 or {num_pathways} entries (one per pathway)")
    return values[:num_pathways]


def _align(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate pathway maps [B, C_p, T_p, ...] along channels at the last pathway's size
    (the fast pathway in SlowFast); others are resized by nearest neighbour (slow frames repeated)."""
    size = maps[-1].shape[2:]
    return torch.cat([m if m.shape[2:] == size else F.interpolate(m, size=size, mode="nearest") for m in maps], 1)


class VideoResNet(nn.Module):
    """Stem `s1`, residual stages `s2`..`s5` and a max-pool `pathway{p}_pool` after `s2`.

    forward(inputs: List[Tensor[B, C_p, T_p, H, W]], one per pathway) -> BackboneOutput:
    pooled [B, D]: per pathway global average over (T, H, W), concatenated;
    frames [B, T', D]: per pathway spatial average, aligned to the last pathway's length T';
    hidden: token maps [B, T', H*W, C] of the stages in RESNET.HIDDEN_STAGES (aligned likewise;
    pooled to RESNET.HIDDEN_SPATIAL_SIZE^2 tokens when set, so maps of several stages share a grid).
    """

    NUM_PATHWAYS = 1

    def __init__(self, cfg):
        super().__init__()
        self.arch = self._check_arch(cfg)
        self.hidden_stages = list(cfg.RESNET.HIDDEN_STAGES)
        self.hidden_size = cfg.RESNET.HIDDEN_SPATIAL_SIZE
        unknown = [s for s in self.hidden_stages if s not in _STAGES]
        if unknown:
            raise ValueError(f"RESNET.HIDDEN_STAGES: unknown stages {unknown}; expected names from {list(_STAGES)}")
        if cfg.RESNET.DEPTH not in _MODEL_STAGE_DEPTH:
            raise ValueError(f"RESNET.DEPTH must be one of {sorted(_MODEL_STAGE_DEPTH)}, got {cfg.RESNET.DEPTH}")
        self.input_channels = list(cfg.DATA.INPUT_CHANNEL_NUM)
        self.out_dim = self.out_dim_from_cfg(cfg)
        self._build(cfg, get_norm(cfg), relu(cfg.RESNET.INPLACE_RELU))
        init_weights(self, cfg.RESNET.ZERO_INIT_FINAL_BN, cfg.RESNET.ZERO_INIT_FINAL_CONV)

    @classmethod
    def channel_divisors(cls, cfg: CfgNode) -> List[int]:
        """Width of each pathway relative to RESNET.WIDTH_PER_GROUP (channels are divided by it)."""
        return [1]

    @classmethod
    def out_dim_from_cfg(cls, cfg: CfgNode) -> int:
        """Width D of `pooled` / `frames`: res5 channels summed over pathways."""
        return sum(cfg.RESNET.WIDTH_PER_GROUP * 32 // d for d in cls.channel_divisors(cfg))

    def _check_arch(self, cfg) -> str:
        name, n = type(self).__name__, self.NUM_PATHWAYS
        archs = [a for a, pools in _POOL1.items() if len(pools) == n]
        if cfg.MODEL.ARCH not in archs:
            raise ValueError(f"MODEL.ARCH {cfg.MODEL.ARCH!r} is not a {name} architecture; expected one of {archs}")
        if len(cfg.DATA.INPUT_CHANNEL_NUM) != n:
            raise ValueError(
                f"DATA.INPUT_CHANNEL_NUM {list(cfg.DATA.INPUT_CHANNEL_NUM)} lists "
                f"{len(cfg.DATA.INPUT_CHANNEL_NUM)} pathways; MODEL.ARCH {cfg.MODEL.ARCH!r} ({name}) takes {n}"
            )
        return cfg.MODEL.ARCH

    def _build(self, cfg, norm: NormFactory, activation: ActivationFactory) -> None:
        n = self.NUM_PATHWAYS
        basis = _TEMPORAL_KERNEL_BASIS[self.arch]
        width = cfg.RESNET.WIDTH_PER_GROUP
        inner = cfg.RESNET.NUM_GROUPS * width
        divisors = self.channel_divisors(cfg)
        dims = [width // d for d in divisors]
        self.s1 = VideoModelStem(self.input_channels, dims, [b[0] for b in basis[0]], norm, activation)
        for k, depth in enumerate(_MODEL_STAGE_DEPTH[cfg.RESNET.DEPTH]):
            dims = self._add_fusion(cfg, _STAGES[k], dims, norm, activation)
            if k == 1:
                for p, size in enumerate(_POOL1[self.arch]):
                    self.add_module(f"pathway{p}_pool", nn.MaxPool3d(size, stride=size))
            num_temp = _per_pathway(cfg, "RESNET.NUM_BLOCK_TEMP_KERNEL", k, n)
            if max(num_temp) > depth:
                raise ValueError(
                    f"RESNET.NUM_BLOCK_TEMP_KERNEL[{k}] = {num_temp} exceeds the {depth} blocks of res{k + 2} "
                    f"at RESNET.DEPTH {cfg.RESNET.DEPTH}"
                )
            strides = _per_pathway(cfg, "RESNET.SPATIAL_STRIDES", k, n)
            dilations = _per_pathway(cfg, "RESNET.SPATIAL_DILATIONS", k, n)
            nl_inds = _per_pathway(cfg, "NONLOCAL.LOCATION", k, n)
            nl_groups = _per_pathway(cfg, "NONLOCAL.GROUP", k, n)
            nl_pools = _per_pathway(cfg, "NONLOCAL.POOL", k, n)
            pathways = [
                PathwayStage(
                    dim_in=dims[p],
                    dim_out=width * 4 * 2**k // d,
                    dim_inner=inner * 2**k // d,
                    temp_kernels=block_temp_kernels(basis[k + 1][p], depth, num_temp[p]),
                    stride=strides[p],
                    dilation=dilations[p],
                    nonlocal_inds=nl_inds[p],
                    nonlocal_group=nl_groups[p],
                    nonlocal_pool=nl_pools[p],
                )
                for p, d in enumerate(divisors)
            ]
            self.add_module(_STAGES[k + 1], ResStage(
                pathways, cfg.RESNET.TRANS_FUNC, cfg.RESNET.NUM_GROUPS, norm, cfg.RESNET.STRIDE_1X1,
                activation, cfg.NONLOCAL.INSTANTIATION,
            ))
            dims = [s.dim_out for s in pathways]

    def _add_fusion(self, cfg, stage: str, dims: List[int], norm: NormFactory,
                    activation: ActivationFactory) -> List[int]:
        """Add the lateral connection after `stage` (none here); return the next stage's input widths."""
        return dims

    def _check_inputs(self, inputs: Sequence[torch.Tensor]) -> None:
        if torch.is_tensor(inputs) or len(inputs) != self.NUM_PATHWAYS:
            got = "a tensor" if torch.is_tensor(inputs) else f"{len(inputs)} tensors"
            raise ValueError(
                f"{type(self).__name__} (MODEL.ARCH {self.arch!r}, DATA.INPUT_CHANNEL_NUM {self.input_channels}) "
                f"takes a list of {self.NUM_PATHWAYS} pathway tensors [B, C, T, H, W], got {got}"
            )
        for p, (x, c) in enumerate(zip(inputs, self.input_channels)):
            if x.dim() != 5 or x.shape[1] != c:
                raise ValueError(
                    f"pathway {p}: expected [B, {c}, T, H, W] (DATA.INPUT_CHANNEL_NUM {self.input_channels}), "
                    f"got {list(x.shape)}"
                )

    def forward(self, inputs: Sequence[torch.Tensor]) -> BackboneOutput:
        self._check_inputs(inputs)
        x = inputs
        hidden: Dict[str, torch.Tensor] = {}
        for stage in _STAGES:
            if stage == "s3":
                x = [self._modules[f"pathway{p}_pool"](t) for p, t in enumerate(x)]
            x = self._modules[stage](x)
            if stage in self.hidden_stages:
                tokens = _align(x)
                if self.hidden_size:
                    tokens = F.adaptive_avg_pool3d(tokens, (tokens.shape[2], self.hidden_size, self.hidden_size))
                hidden[stage] = tokens.flatten(3).permute(0, 2, 3, 1).contiguous()
            fuse = self._modules.get(f"{stage}_fuse")
            if fuse is not None:
                x = fuse(x)
        pooled = torch.cat([t.mean((2, 3, 4)) for t in x], 1)
        frames = _align([t.mean((3, 4)) for t in x]).transpose(1, 2).contiguous()
        return BackboneOutput(pooled, frames, [hidden[s] for s in self.hidden_stages] or None)


class FuseFastToSlow(nn.Module):
    """Lateral connection: [slow, fast] -> [cat(slow, relu(bn(conv_f2s(fast)))), fast].

    `conv_f2s` is a time-strided (ALPHA) convolution of kernel FUSION_KERNEL_SZ x 1 x 1 with
    FUSION_CONV_CHANNEL_RATIO times the fast pathway's channels.
    """

    def __init__(self, dim_fast: int, channel_ratio: int, kernel: int, alpha: int, norm: NormFactory,
                 activation: ActivationFactory = relu()):
        super().__init__()
        self.conv_f2s = nn.Conv3d(dim_fast, dim_fast * channel_ratio, (kernel, 1, 1), stride=(alpha, 1, 1),
                                  padding=(kernel // 2, 0, 0), bias=False)
        self.bn = norm(dim_fast * channel_ratio)
        self.relu = activation()

    def forward(self, x: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        slow, fast = x
        return [torch.cat([slow, self.relu(self.bn(self.conv_f2s(fast)))], 1), fast]


@BACKBONE_REGISTRY.register()
class ResNet(VideoResNet):
    """Single-pathway video ResNet: Slow, I3D, C2D by MODEL.ARCH (PySlowFast's `ResNet`)."""

    NUM_PATHWAYS = 1


@BACKBONE_REGISTRY.register()
class SlowFast(VideoResNet):
    """Two pathways, slow (inputs[0], T/ALPHA frames) and fast (inputs[1], T frames, 1/BETA_INV of
    the channels), with fast->slow fusions `s1_fuse`..`s4_fuse` (PySlowFast's `SlowFast`)."""

    NUM_PATHWAYS = 2

    @classmethod
    def channel_divisors(cls, cfg: CfgNode) -> List[int]:
        if cfg.RESNET.WIDTH_PER_GROUP < cfg.SLOWFAST.BETA_INV:
            raise ValueError(
                f"RESNET.WIDTH_PER_GROUP ({cfg.RESNET.WIDTH_PER_GROUP}) must be at least SLOWFAST.BETA_INV "
                f"({cfg.SLOWFAST.BETA_INV}) so that the fast pathway has channels"
            )
        return [1, cfg.SLOWFAST.BETA_INV]

    def _add_fusion(self, cfg, stage: str, dims: List[int], norm: NormFactory,
                    activation: ActivationFactory) -> List[int]:
        ratio = cfg.SLOWFAST.FUSION_CONV_CHANNEL_RATIO
        self.add_module(f"{stage}_fuse", FuseFastToSlow(
            dims[1], ratio, cfg.SLOWFAST.FUSION_KERNEL_SZ, cfg.SLOWFAST.ALPHA, norm, activation,
        ))
        return [dims[0] + dims[1] * ratio, dims[1]]
