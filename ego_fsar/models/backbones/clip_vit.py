"""OpenAI CLIP's visual transformer (ViT-B/16 and kin), run on every frame of a clip.

Same computation as `clip/model.py` `VisionTransformer`: patch conv without bias, class token,
learned position table, `ln_pre`, pre-norm blocks with QuickGELU MLPs, `ln_post` on the class
token and the `proj` matrix. Names follow the ViT blocks of this package; the checkpoint converter
(`ego_fsar.utils.checkpoint_formats`, "clip") maps CLIP's names onto them:

    visual.conv1.weight [D,3,p,p]                 -> patch_embed.proj.weight [D,3,1,p,p]
    visual.class_embedding / positional_embedding -> cls_token / pos_embed
    visual.ln_pre / ln_post / proj                -> norm_pre / norm / proj
    visual.transformer.resblocks.i.attn.in_proj_weight, in_proj_bias, out_proj
                                                  -> blocks.i.attn.qkv.weight, qkv.bias, proj
    ...resblocks.i.ln_1, ln_2, mlp.c_fc, mlp.c_proj -> blocks.i.norm1, norm2, mlp.fc1, mlp.fc2
"""
from typing import List

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ...utils.position_tables import resize_grid_table
from ..build import BACKBONE_REGISTRY
from ..outputs import BackboneOutput
from .vit import Block, PatchEmbed, check_layers, drop_path_rates, single_pathway

# CLIP's LayerNorm epsilon (torch's default).
CLIP_LN_EPS = 1e-5


class QuickGELU(nn.Module):
    """CLIP's GELU approximation x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


@BACKBONE_REGISTRY.register()
class CLIPViT(nn.Module):
    """CLIP visual tower per frame: [B, C, T, H, W] -> BackboneOutput.

    frames: `proj(norm(class token))` of every frame [B, T, P] (P = VIT.PROJ_DIM, or the width
        when it is 0). pooled: their mean [B, P].
    hidden: for each block in VIT.HIDDEN_LAYERS, its patch tokens through `norm` and `proj`
        [B, T, H'*W', P] (EMP-Net reads blocks 3, 7, 11).
    Sized by VIT.EMBED_DIM (width), VIT.DEPTH, VIT.NUM_HEADS, VIT.MLP_RATIO, VIT.PATCH_SIZE.
    """

    def __init__(self, cfg):
        super().__init__()
        vit = cfg.VIT
        width, depth = vit.EMBED_DIM, vit.DEPTH
        self.patch_embed = PatchEmbed(cfg.DATA.INPUT_CHANNEL_NUM[0], width, vit.PATCH_SIZE, 1, bias=False)
        crop = cfg.DATA.TRAIN_CROP_SIZE
        self.pos_grid = self.patch_embed.grid((1, crop, crop))
        scale = width ** -0.5
        self.cls_token = nn.Parameter(scale * torch.randn(width))
        self.pos_embed = nn.Parameter(scale * torch.randn(1 + self.pos_grid[1] * self.pos_grid[2], width))
        self.norm_pre = nn.LayerNorm(width, eps=CLIP_LN_EPS)
        rates = drop_path_rates(vit.DROP_PATH_RATE, depth)
        self.blocks = nn.ModuleList(
            Block(width, vit.NUM_HEADS, vit.MLP_RATIO, "qkv", rates[i], vit.ATTN_DROP_RATE,
                  eps=CLIP_LN_EPS, act_layer=QuickGELU)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(width, eps=CLIP_LN_EPS)
        self.proj = nn.Parameter(scale * torch.randn(width, vit.PROJ_DIM)) if vit.PROJ_DIM > 0 else None
        self.hidden_layers = check_layers(vit.HIDDEN_LAYERS, depth)
        self.out_dim = self.out_dim_from_cfg(cfg)
        self._init_blocks(width, depth)

    @classmethod
    def out_dim_from_cfg(cls, cfg: CfgNode) -> int:
        return cfg.VIT.PROJ_DIM or cfg.VIT.EMBED_DIM

    def _init_blocks(self, width: int, depth: int) -> None:
        """CLIP's initialisation of the transformer (normal with width/depth-scaled stds, zero biases)."""
        proj_std = width ** -0.5 * (2 * depth) ** -0.5
        for block in self.blocks:
            for linear, std in ((block.attn.qkv, width ** -0.5), (block.attn.proj, proj_std),
                                (block.mlp.fc1, (2 * width) ** -0.5), (block.mlp.fc2, proj_std)):
                nn.init.normal_(linear.weight, std=std)
                nn.init.zeros_(linear.bias)

    def _output(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(tokens)
        return tokens if self.proj is None else tokens @ self.proj.to(tokens.dtype)

    def forward(self, inputs: List[torch.Tensor]) -> BackboneOutput:
        x = single_pathway(inputs, type(self).__name__)
        b, t = x.shape[0], x.shape[2]
        _, h, w = self.patch_embed.grid(x.shape[2:])
        tokens = self.patch_embed(x)
        d = tokens.shape[-1]
        tokens = tokens.reshape(b * t, h * w, d)
        cls = self.cls_token.to(tokens.dtype).expand(b * t, 1, d)
        pos = self.pos_embed
        if (1, h, w) != self.pos_grid:
            pos = torch.cat([pos[:1], resize_grid_table(pos[1:], self.pos_grid, (1, h, w))])
        tokens = self.norm_pre(torch.cat([cls, tokens], dim=1) + pos.to(tokens.dtype))
        hidden = []
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if i in self.hidden_layers:
                hidden.append(self._output(tokens[:, 1:]).reshape(b, t, h * w, -1))
        frames = self._output(tokens[:, 0]).reshape(b, t, -1)
        return BackboneOutput(frames.mean(1), frames, hidden or None)
