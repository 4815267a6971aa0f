"""Frozen-in-Time's space-time transformer, EgoVLP's video tower: divided attention over frames.

Per frame a 2D patch embedding (`patch_embed.proj`, Conv2d), a class token for the clip, a spatial
position table with a class row (`pos_embed` [1, 1+S, D]) tiled over the frames plus a temporal table
(`temporal_embed` [1, F, D]) repeated within each frame. Each block (`SpaceTimeBlock`) runs attention
over time (`timeattn`, after `norm3`: each patch token with the tokens at its position in the other
frames) and then over space (`attn`, after `norm1`: each patch token with the tokens of its frame); the
class token attends to the whole clip in both, and every patch token also attends to it. As in the
release, the time attention's output reaches the residual stream only through the input of the space
attention: `x + space(norm1(x + time(norm3 x)))`, then `+ mlp(norm2 .)`.

Parameter names and shapes are those of the release's `SpaceTimeTransformer` (EgoVLP's
`video_model.*`), so the "egovlp" checkpoint conversion loads a released video tower 1:1. A clip may
have fewer frames than the temporal table (the first rows are used, as the release does); a checkpoint
with another number of frames is fitted at loading (`position_tables.resize_temporal_embed`:
truncated, or zero-filled as the release's default `load_temporal_fix`).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn
from torchvision.ops import StochasticDepth

from ...utils.position_tables import resize_grid_table
from ..build import BACKBONE_REGISTRY
from ..outputs import BackboneOutput
from .vit import LN_EPS, Mlp, check_layers, drop_path_rates, init_vit_weights, single_pathway

GROUPS = ("space", "time")


class DividedAttention(nn.Module):
    """Multi-head attention of a clip's tokens [B, 1 + F*S, D] (class token first, patch tokens frame by
    frame) within groups: "space" (the S tokens of a frame) or "time" (the F tokens of a position). The
    class token attends to every token; each patch token to the class token and its group."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"VIT.EMBED_DIM ({dim}) must be divisible by VIT.NUM_HEADS ({num_heads})")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, group: str, frames: int) -> torch.Tensor:
        b, n, d = x.shape
        heads, spots = self.num_heads, (n - 1) // frames
        drop = self.attn_drop if self.training else 0.0
        q, k, v = self.qkv(x).view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)  # [B,h,N,d']
        cls = F.scaled_dot_product_attention(q[:, :, :1], k, v, dropout_p=drop)

        def grouped(t: torch.Tensor) -> torch.Tensor:
            """[B, h, F*S, d'] -> [B * groups, h, group size, d']."""
            t = t.reshape(b, heads, frames, spots, -1)
            t = t.permute(0, 2, 1, 3, 4) if group == "space" else t.permute(0, 3, 1, 2, 4)
            return t.reshape(-1, heads, t.shape[3], t.shape[4])

        count = frames if group == "space" else spots
        cls_kv = [t[:, :, :1].repeat_interleave(count, dim=0) for t in (k, v)]
        out = F.scaled_dot_product_attention(grouped(q[:, :, 1:]), torch.cat([cls_kv[0], grouped(k[:, :, 1:])], 2),
                                             torch.cat([cls_kv[1], grouped(v[:, :, 1:])], 2), dropout_p=drop)
        out = out.reshape(b, count, heads, out.shape[2], -1)
        out = out.permute(0, 2, 1, 3, 4) if group == "space" else out.permute(0, 2, 3, 1, 4)
        out = torch.cat([cls, out.reshape(b, heads, n - 1, -1)], dim=2)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SpaceTimeBlock(nn.Module):
    """Time attention, space attention and MLP over a clip's tokens [B, 1 + F*S, D] (see the module doc).
    Time attention starts as the release's "zeros" initialisation: zero `qkv`, `proj` weight of ones."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 attn_drop: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = DividedAttention(dim, num_heads, attn_drop)
        self.timeattn = DividedAttention(dim, num_heads, attn_drop)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm3 = nn.LayerNorm(dim, eps=LN_EPS)

    def zero_time_attention(self) -> None:
        """The release's "zeros" start: the time attention outputs zeros, so the block begins as a ViT's."""
        with torch.no_grad():
            nn.init.zeros_(self.timeattn.qkv.weight)
            nn.init.zeros_(self.timeattn.qkv.bias)
            nn.init.ones_(self.timeattn.proj.weight)
            nn.init.zeros_(self.timeattn.proj.bias)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        time = self.timeattn(self.norm3(x), "time", frames)
        x = x + self.drop_path(self.attn(self.norm1(x + time), "space", frames))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class FramePatchEmbed(nn.Module):
    """`proj` (Conv2d, kernel = stride = patch) on every frame: [B, C, T, H, W] -> tokens [B, T*H'*W', D],
    frame by frame, and the grid (H', W')."""

    def __init__(self, in_chans: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        b, c, t, h, w = x.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"SpaceTimeViT: frames of {h}x{w} do not divide into {self.patch_size}-px patches "
                             "(VIT.PATCH_SIZE)")
        tokens = self.proj(x.transpose(1, 2).reshape(b * t, c, h, w))  # [B*T, D, H', W']
        grid = tuple(tokens.shape[2:])
        return tokens.flatten(2).transpose(1, 2).reshape(b, -1, tokens.shape[1]), grid


@BACKBONE_REGISTRY.register()
class SpaceTimeViT(nn.Module):
    """EgoVLP's video transformer: [B, C, T, H, W] -> BackboneOutput.

    pooled: `norm(class token)` [B, D] (EgoVLP's video embedding before `vid_proj`).
    frames: per frame, the mean of its patch tokens through `norm` [B, T, D].
    hidden: patch tokens after the blocks in VIT.HIDDEN_LAYERS, [B, T, S, D].
    Sized by VIT.EMBED_DIM, DEPTH, NUM_HEADS, MLP_RATIO, PATCH_SIZE, DROP_PATH_RATE, ATTN_DROP_RATE; the
    temporal table has DATA.NUM_FRAMES rows (clips may be shorter), the spatial one DATA.TRAIN_CROP_SIZE's
    grid (interpolated for other sizes).
    """

    def __init__(self, cfg):
        super().__init__()
        vit = cfg.VIT
        dim, depth, patch = vit.EMBED_DIM, vit.DEPTH, vit.PATCH_SIZE
        self.patch_embed = FramePatchEmbed(cfg.DATA.INPUT_CHANNEL_NUM[0], dim, patch)
        crop = cfg.DATA.TRAIN_CROP_SIZE
        if crop % patch:
            raise ValueError(f"DATA.TRAIN_CROP_SIZE ({crop}) must be divisible by VIT.PATCH_SIZE ({patch})")
        self.pos_grid = (1, crop // patch, crop // patch)
        self.cls_token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, dim), std=0.02))
        self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1 + (crop // patch) ** 2, dim), std=0.02))
        self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.DATA.NUM_FRAMES, dim))
        rates = drop_path_rates(vit.DROP_PATH_RATE, depth)
        self.blocks = nn.ModuleList(SpaceTimeBlock(dim, vit.NUM_HEADS, vit.MLP_RATIO, rates[i], vit.ATTN_DROP_RATE)
                                    for i in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.hidden_layers = check_layers(vit.HIDDEN_LAYERS, depth)
        self.out_dim = dim
        for module in (*self.blocks, self.norm):
            module.apply(init_vit_weights)
        for block in self.blocks:
            block.zero_time_attention()

    @classmethod
    def out_dim_from_cfg(cls, cfg: CfgNode) -> int:
        return cfg.VIT.EMBED_DIM

    def _positions(self, frames: int, height: int, width: int) -> torch.Tensor:
        """[1, 1 + frames*height*width, D]: class row, then the spatial table (interpolated to the grid
        when it differs) plus each frame's temporal row."""
        if frames > self.temporal_embed.shape[1]:
            raise ValueError(f"SpaceTimeViT: a clip of {frames} frames exceeds its temporal table of "
                             f"{self.temporal_embed.shape[1]} (DATA.NUM_FRAMES)")
        spatial = resize_grid_table(self.pos_embed[0, 1:], self.pos_grid, (1, height, width))
        table = spatial.unsqueeze(0) + self.temporal_embed[0, :frames].unsqueeze(1)  # [F, S, D]
        return torch.cat([self.pos_embed[0, :1], table.flatten(0, 1)]).unsqueeze(0)

    def forward(self, inputs: Sequence[torch.Tensor]) -> BackboneOutput:
        x = single_pathway(inputs, type(self).__name__)
        b, t = x.shape[0], x.shape[2]
        tokens, grid = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1).to(tokens.dtype), tokens], dim=1)
        tokens = tokens + self._positions(t, *grid).to(tokens.dtype)
        hidden: List[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, t)
            if i in self.hidden_layers:
                hidden.append(tokens[:, 1:].reshape(b, t, -1, tokens.shape[-1]))
        tokens = self.norm(tokens)
        frames = tokens[:, 1:].reshape(b, t, -1, tokens.shape[-1]).mean(2)
        return BackboneOutput(tokens[:, 0], frames, hidden or None)
