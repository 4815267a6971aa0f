"""Video ViT (VideoMAE's fine-tuning network) and the transformer parts it shares with CLIPViT.

Parameter names and shapes are those of VideoMAE's `modeling_finetune.VisionTransformer`
(`patch_embed.proj`, `blocks.i.norm1`, `blocks.i.attn.qkv` with separate `q_bias`/`v_bias`,
`blocks.i.attn.proj`, `blocks.i.mlp.fc1/fc2`, `fc_norm`), so VideoMAE, MM-CDFSL and TAMT weights
load 1:1. The fixed sinusoid position table is VideoMAE's and, as there, not part of the state
dict; it is built for the token grid of the actual input, so any size divisible by the patch and
tubelet sizes works.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn
from torchvision.ops import StochasticDepth

from ...utils.position_tables import resize_grid_table
from ..build import BACKBONE_REGISTRY
from ..outputs import BackboneOutput
from .adapters import TemporalAwareAdapter
from .masking import visible_tokens

# VideoMAE's LayerNorm epsilon.
LN_EPS = 1e-6
QKV_BIAS_MODES = ("qv", "qkv", "none")


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed position table `[num_positions, dim]`: for position p and channel j,
    angle p / 10000^(2 * (j // 2) / dim), sine on even channels and cosine on odd ones."""
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    channel = torch.arange(dim, dtype=torch.float64)
    angle = position / torch.pow(10000.0, 2 * torch.div(channel, 2, rounding_mode="floor") / dim)
    table = torch.empty_like(angle)
    table[:, 0::2] = angle[:, 0::2].sin()
    table[:, 1::2] = angle[:, 1::2].cos()
    return table.float()


def single_pathway(inputs: Sequence[torch.Tensor], name: str) -> torch.Tensor:
    """The one pathway tensor [B, C, T, H, W] a transformer takes."""
    if len(inputs) != 1 or inputs[0].dim() != 5:
        shapes = [tuple(x.shape) for x in inputs]
        raise ValueError(f"{name} takes one pathway [B, C, T, H, W], got {shapes}; use a single-pathway "
                         "MODEL.ARCH such as 'vit'")
    return inputs[0]


def drop_path_rates(rate: float, depth: int) -> List[float]:
    """Stochastic depth rising linearly from 0 at the first block to `rate` at the last."""
    return [rate * i / max(depth - 1, 1) for i in range(depth)]


def check_layers(layers: Sequence[int], depth: int) -> List[int]:
    """Validate VIT.HIDDEN_LAYERS against the number of blocks."""
    bad = [i for i in layers if not 0 <= i < depth]
    if bad:
        raise ValueError(f"VIT.HIDDEN_LAYERS {list(layers)}: block indices must be in [0, {depth}), got {bad}")
    return sorted(set(layers))


class PatchEmbed(nn.Module):
    """Tubelet embedding `proj` (Conv3d, kernel = stride = (tubelet, patch, patch)):
    [B, C, T, H, W] -> tokens [B, T'*H'*W', D], slot-major (t, then h, then w)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, tubelet_size: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=kernel, stride=kernel, bias=bias)

    def grid(self, thw: Sequence[int]) -> Tuple[int, int, int]:
        """Token grid (T', H', W') of a clip of T x H x W, which must divide by the tubelet/patch size."""
        t, h, w = thw
        if t % self.tubelet_size or h % self.patch_size or w % self.patch_size:
            raise ValueError(f"clip of {t}x{h}x{w} (T x H x W) does not divide into tubelets of "
                             f"{self.tubelet_size}x{self.patch_size}x{self.patch_size} "
                             "(VIT.TUBELET_SIZE, VIT.PATCH_SIZE)")
        return t // self.tubelet_size, h // self.patch_size, w // self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused `qkv` projection and output `proj`.

    Bias of `qkv`: "qv" (VideoMAE: `q_bias`, `v_bias`, none on keys), "qkv" (CLIP: `qkv.bias`)
    or "none".
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: str = "qv", attn_drop: float = 0.0):
        super().__init__()
        if qkv_bias not in QKV_BIAS_MODES:
            raise ValueError(f"qkv_bias must be one of {QKV_BIAS_MODES}, got {qkv_bias!r}")
        if dim % num_heads:
            raise ValueError(f"VIT.EMBED_DIM ({dim}) must be divisible by VIT.NUM_HEADS ({num_heads})")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias == "qkv")
        if qkv_bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def _qkv_bias(self) -> Optional[torch.Tensor]:
        if hasattr(self, "q_bias"):
            return torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        return self.qkv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = F.linear(x, self.qkv.weight, self._qkv_bias())
        q, k, v = qkv.view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 -> activation -> fc2."""

    def __init__(self, dim: int, hidden: int, act_layer: type = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: `x + attn(norm1 x)`, then `x + mlp(norm2 x)` (+ `tam(norm2 x)`
    with a TAMT adapter), with optional layer-scale (`gamma_1`, `gamma_2`) and drop-path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: str = "qv",
                 drop_path: float = 0.0, attn_drop: float = 0.0, init_values: float = 0.0,
                 eps: float = LN_EPS, act_layer: type = nn.GELU, adapter: Optional[nn.Module] = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.gamma_1 = nn.Parameter(init_values * torch.ones(dim)) if init_values > 0 else None
        self.gamma_2 = nn.Parameter(init_values * torch.ones(dim)) if init_values > 0 else None
        self.tam = adapter

    @staticmethod
    def _scale(gamma: Optional[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return x if gamma is None else gamma * x

    def forward(self, x: torch.Tensor, num_slots: int = 1) -> torch.Tensor:
        """Tokens [B, N, D] -> [B, N, D]; `num_slots` temporal slots are what the adapter sees."""
        x = x + self.drop_path(self._scale(self.gamma_1, self.attn(self.norm1(x))))
        y = self.norm2(x)
        x = x + self.drop_path(self._scale(self.gamma_2, self.mlp(y)))
        if self.tam is not None:
            x = x + self.drop_path(self.tam(y, num_slots))
        return x


def init_vit_weights(module: nn.Module) -> None:
    """VideoMAE's init: Linear weights truncated normal (std 0.02) with zero bias, LayerNorm 1 / 0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@BACKBONE_REGISTRY.register()
class VideoViT(nn.Module):
    """VideoMAE's video transformer: [B, C, T, H, W] -> BackboneOutput.

    pooled: `fc_norm(mean of tokens)` [B, D] (VIT.USE_MEAN_POOLING), else `norm(cls token)`.
    frames: per temporal slot (tubelet), the mean of its tokens [B, T/tubelet, D] (through `fc_norm`
        with mean pooling).
    hidden: tokens after the blocks in VIT.HIDDEN_LAYERS, [B, T', S, D] (S visible spatial tokens).
    `forward(inputs, mask)` runs the encoder on the tokens where the [B, N] `mask` is False only
    (tube masks, see `masking.py`). VIT.ADAPTER_LAYERS last blocks carry a TAMT adapter.
    """

    def __init__(self, cfg):
        super().__init__()
        vit = cfg.VIT
        dim, depth = vit.EMBED_DIM, vit.DEPTH
        self.mean_pooling = vit.USE_MEAN_POOLING
        if vit.ADAPTER_LAYERS and not self.mean_pooling:
            raise ValueError("VIT.ADAPTER_LAYERS needs VIT.USE_MEAN_POOLING (TAMT's layout has no class token)")
        if not 0 <= vit.ADAPTER_LAYERS <= depth:
            raise ValueError(f"VIT.ADAPTER_LAYERS must be in [0, VIT.DEPTH={depth}], got {vit.ADAPTER_LAYERS}")
        self.patch_embed = PatchEmbed(cfg.DATA.INPUT_CHANNEL_NUM[0], dim, vit.PATCH_SIZE, vit.TUBELET_SIZE)
        crop = cfg.DATA.TRAIN_CROP_SIZE
        self.pos_grid = self.patch_embed.grid((cfg.DATA.NUM_FRAMES, crop, crop))
        num_tokens = math.prod(self.pos_grid)
        if vit.LEARNABLE_POS_EMBED:
            self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, num_tokens, dim), std=0.02))
        else:
            self.register_buffer("pos_embed", sinusoid_table(num_tokens, dim).unsqueeze(0), persistent=False)
        if not self.mean_pooling:
            self.cls_token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, dim), std=0.02))
        rates = drop_path_rates(vit.DROP_PATH_RATE, depth)
        first_adapter = depth - vit.ADAPTER_LAYERS
        self.blocks = nn.ModuleList(
            Block(dim, vit.NUM_HEADS, vit.MLP_RATIO, "qv" if vit.QKV_BIAS else "none", rates[i],
                  vit.ATTN_DROP_RATE, vit.INIT_VALUES,
                  adapter=TemporalAwareAdapter(dim) if i >= first_adapter else None)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=LN_EPS) if vit.ENCODER_NORM or not self.mean_pooling else None
        self.fc_norm = nn.LayerNorm(dim, eps=LN_EPS) if self.mean_pooling else None
        self.hidden_layers = check_layers(vit.HIDDEN_LAYERS, depth)
        self.out_dim = dim
        self.apply(init_vit_weights)

    @classmethod
    def out_dim_from_cfg(cls, cfg: CfgNode) -> int:
        return cfg.VIT.EMBED_DIM

    def _pos_table(self, grid: Tuple[int, int, int]) -> torch.Tensor:
        """Position table [1, N, D] of a token grid."""
        if tuple(grid) == self.pos_grid:
            return self.pos_embed
        if isinstance(self.pos_embed, nn.Parameter):
            return resize_grid_table(self.pos_embed[0], self.pos_grid, grid).unsqueeze(0)
        return sinusoid_table(math.prod(grid), self.out_dim).to(self.pos_embed.device).unsqueeze(0)

    def token_grid(self, inputs: Sequence[torch.Tensor]) -> Tuple[int, int, int]:
        """Token grid (T', H', W') of a pathway list [B, C, T, H, W] (for drawing tube masks)."""
        return self.patch_embed.grid(single_pathway(inputs, type(self).__name__).shape[2:])

    def encode(self, inputs: List[torch.Tensor], mask: Optional[torch.Tensor] = None
               ) -> Tuple[torch.Tensor, List[torch.Tensor], int]:
        """Tokens after the blocks (and `norm` with VIT.ENCODER_NORM) [B, extra + N_vis, D] (extra: the
        class token, if any), the VIT.HIDDEN_LAYERS maps and the number of temporal slots. With a [B, N]
        `mask` the encoder runs on the tokens where it is False only."""
        x = single_pathway(inputs, type(self).__name__)
        grid = self.patch_embed.grid(x.shape[2:])
        slots = grid[0]
        tokens = self.patch_embed(x)
        tokens = tokens + self._pos_table(grid).to(tokens.dtype)
        if mask is not None:
            tokens = visible_tokens(tokens, mask, slots)
        b, _, d = tokens.shape
        extra = 0 if self.mean_pooling else 1
        if extra:
            tokens = torch.cat([self.cls_token.expand(b, -1, -1).to(tokens.dtype), tokens], dim=1)
        hidden = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, slots)
            if i in self.hidden_layers:
                hidden.append(tokens[:, extra:].reshape(b, slots, -1, d))
        if self.norm is not None:
            tokens = self.norm(tokens)
        return tokens, hidden, slots

    def forward(self, inputs: List[torch.Tensor], mask: Optional[torch.Tensor] = None) -> BackboneOutput:
        tokens, hidden, slots = self.encode(inputs, mask)
        b, _, d = tokens.shape
        patches = tokens if self.mean_pooling else tokens[:, 1:]
        frames = patches.reshape(b, slots, -1, d).mean(2)
        if self.mean_pooling:
            pooled, frames = self.fc_norm(patches.mean(1)), self.fc_norm(frames)
        else:
            pooled = tokens[:, 0]
        return BackboneOutput(pooled, frames, hidden or None)
