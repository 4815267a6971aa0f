"""MM-CDFSL stage 1 (Hatano et al., ECCV 2024): masked video pre-training of one modality's encoder.

Per clip a tube mask hides MASK.RATIO of the spatial token positions (the same ones in every temporal
slot); the VideoViT encoder sees the visible tokens only. A light decoder (VideoMAE's: `encoder_to_decoder`,
a `mask_token`, MASK.DECODER_DEPTH blocks, `norm`, `head`) reconstructs the pixels of the masked patches,
normalised per patch and channel as VideoMAE does (MASK.NORM_TARGET), under an MSE; the LayerNorm'd mean
of the visible tokens (`encoder.fc_norm`) feeds the source action classifier `head_action`.

Outputs: `logits` [B, MODEL.NUM_CLASSES] (the classification loss, weighted by LOSS.WEIGHTS "cls":
MM-CDFSL's lambda, 0.05 RGB, 0.01 flow and pose), `loss_recon` (source clips) and, when the batch has
unlabelled target clips (`target_inputs`, DATA.UNLABELLED_SPLIT), `loss_recon_target` through the same
mask. The paper adds the target term to the loss (LOSS.WEIGHTS default 1.0); the released code computes
and logs it but leaves it out of the total: `LOSS.WEIGHTS [["recon_target", 0.0]]` reproduces that.

Modalities (DATA.MODALITIES[0]): RGB 3 channels at 224 px, flow 2 channels at 224 px (DATA.FLOW_MEAN /
FLOW_STD), pose 21 heatmaps at 56 px with VIT.PATCH_SIZE 4: the same 8 x 14 x 14 token grid. State-dict
names are those of VideoMAE's pre-training model (`encoder.*`, `decoder.*`, `encoder_to_decoder`,
`mask_token`), `encoder.fc_norm` and MM-CDFSL's `head_action`, so a VideoMAE pre-training checkpoint
initialises it, and an MM-CDFSL Lightning checkpoint loads with TRAIN.CHECKPOINT_PREFIX_MAP
[["_forward_module.model.fc_norm.", "encoder.fc_norm."], ["_forward_module.model.", ""]].
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from ..backbones.masking import TubeMaskGenerator
from ..backbones.vit import LN_EPS, Block, init_vit_weights, sinusoid_table
from ..build import MODEL_REGISTRY, build_backbone

# Model inputs' normalisation (mean, std) per modality: config keys of DATA.
_STATS_KEYS = {"rgb": ("MEAN", "STD"), "flow": ("FLOW_MEAN", "FLOW_STD"), "pose": ("POSE_MEAN", "POSE_STD")}


def modality_stats(cfg: CfgNode, modality: str, channels: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) [C] that the dataset normalised modality `modality`'s C channels with."""
    mean, std = (torch.as_tensor(cfg.DATA[k], dtype=torch.float32) for k in _STATS_KEYS[modality])
    return mean.expand(channels).clone(), std.expand(channels).clone()


def patchify(videos: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, N, tubelet * patch * patch, C], tokens in the patch embedding's order
    (t, then h, then w) and pixels of a patch in (t, h, w) order."""
    b, c, t, h, w = videos.shape
    x = videos.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, tubelet * patch * patch, c)


def reconstruction_targets(videos: torch.Tensor, tubelet: int, patch: int, normalize: bool) -> torch.Tensor:
    """VideoMAE's regression targets [B, N, tubelet * patch^2 * C] of un-normalised clips [B, C, T, H, W]:
    with `normalize`, each patch's pixels minus their mean, over their (unbiased) std + 1e-6, per channel."""
    patches = patchify(videos.float(), tubelet, patch)
    if normalize:
        patches = (patches - patches.mean(2, keepdim=True)) / (patches.var(2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return patches.flatten(2)


class MaskedDecoder(nn.Module):
    """VideoMAE's pre-training decoder: blocks over [visible tokens, mask tokens] (each plus its fixed
    position), then `norm` and `head` on the mask tokens: [B, N_masked, out_dim]."""

    def __init__(self, dim: int, depth: int, num_heads: int, out_dim: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, "qv") for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, visible: torch.Tensor, mask_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, _, d = visible.shape
        pos = sinusoid_table(mask.shape[1], d).to(visible).expand(b, -1, -1)
        hidden = mask_token.to(visible.dtype) + pos[mask].reshape(b, -1, d)
        x = torch.cat([visible + pos[~mask].reshape(b, -1, d), hidden], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -hidden.shape[1]:]))


@MODEL_REGISTRY.register()
class MaskedVideoPretrain(nn.Module):
    """`forward(inputs, target_inputs=None)` -> {"logits", "loss_recon"[, "loss_recon_target"]}; see the
    module docstring. `backbone` is the encoder (few-shot tests use its `pooled` features)."""

    HEAD_KEY_PREFIXES = ("encoder.fc_norm.", "head_action.")

    def __init__(self, cfg):
        super().__init__()
        if not (cfg.VIT.USE_MEAN_POOLING and cfg.VIT.ENCODER_NORM):
            raise ValueError("MaskedVideoPretrain needs VIT.USE_MEAN_POOLING True and VIT.ENCODER_NORM True "
                             "(VideoMAE's pre-training encoder: `norm` on the tokens, `fc_norm` of their mean)")
        self.modality = cfg.DATA.MODALITIES[0]
        self.encoder = build_backbone(cfg, "VideoViT")
        channels = cfg.DATA.INPUT_CHANNEL_NUM[0]
        self.tubelet, self.patch = cfg.VIT.TUBELET_SIZE, cfg.VIT.PATCH_SIZE
        self.normalize_target = cfg.MASK.NORM_TARGET
        mean, std = modality_stats(cfg, self.modality, channels)
        self.register_buffer("input_mean", mean.view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("input_std", std.view(1, -1, 1, 1, 1), persistent=False)
        dim, dec = self.encoder.out_dim, cfg.MASK.DECODER_DIM
        self.encoder_to_decoder = nn.Linear(dim, dec, bias=False)
        self.mask_token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(1, 1, dec), std=0.02))
        self.decoder = MaskedDecoder(dec, cfg.MASK.DECODER_DEPTH, cfg.MASK.DECODER_NUM_HEADS,
                                     channels * self.tubelet * self.patch ** 2, cfg.VIT.MLP_RATIO)
        self.fc_dropout = nn.Dropout(cfg.MODEL.DROPOUT_RATE)
        self.head_action = nn.Linear(dim, cfg.MODEL.NUM_CLASSES)
        for module in (self.encoder_to_decoder, self.decoder, self.head_action):
            module.apply(init_vit_weights)
        self.masks = TubeMaskGenerator.from_cfg(cfg)
        self.BATCH_INPUTS: Tuple[str, ...] = ("target_inputs",) if cfg.DATA.UNLABELLED_SPLIT else ()

    @property
    def backbone(self) -> nn.Module:
        return self.encoder

    def _reconstruction_loss(self, inputs: Sequence[torch.Tensor], mask: torch.Tensor,
                             tokens: torch.Tensor) -> torch.Tensor:
        """MSE between the decoder's output for the masked patches and their targets."""
        pred = self.decoder(self.encoder_to_decoder(tokens), self.mask_token, mask)
        with torch.no_grad():
            videos = inputs[0].float() * self.input_std + self.input_mean
            target = reconstruction_targets(videos, self.tubelet, self.patch, self.normalize_target)
            target = target[mask].reshape(pred.shape)
        return F.mse_loss(pred.float(), target)

    def forward(self, inputs: List[torch.Tensor],
                target_inputs: Optional[List[torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
        grid = self.encoder.token_grid(inputs)
        mask = self.masks(inputs[0].shape[0], grid).to(inputs[0].device)
        if not mask.any():
            raise ValueError(f"MASK.RATIO {self.masks.ratio} masks none of the {grid[1] * grid[2]} spatial token "
                             f"positions: masked pre-training needs at least one masked token (raise MASK.RATIO)")
        tokens, _, _ = self.encoder.encode(inputs, mask)
        pooled = self.encoder.fc_norm(tokens.mean(1))
        out = {"logits": self.head_action(self.fc_dropout(pooled)), "embeddings": pooled,
               "loss_recon": self._reconstruction_loss(inputs, mask, tokens)}
        if target_inputs is not None:
            target_tokens, _, _ = self.encoder.encode(target_inputs, mask)
            out["loss_recon_target"] = self._reconstruction_loss(target_inputs, mask, target_tokens)
        return out
