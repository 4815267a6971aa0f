"""EMP-Net: enhancing multi-level post-reasoning for few-shot action recognition (Wu et al., ECCV 2024)."""
import random
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from ...config.configurable import configurable
from ..build import HEAD_REGISTRY
from ..outputs import BackboneOutput, ClipFeatures, as_backbone_output
from ..text_encoder import TextEncoder, cfg_templates
from .fewshot_utils import check_support_labels, class_prototypes, otam_distance, reference_cosine

# Reference block sizes, relative to the token width C: 4 heads of C/8, MLP C/4.
HEADS, HEAD_DIV, MLP_DIV = 4, 8, 4
# Reference dropouts: after the attention output projection and inside the MLP.
ATTN_DROPOUT, MLP_DROPOUT = 0.2, 0.05
# Levels, in the order of the six probability maps: matching (OTAM) then cross-modal (text).
LEVELS = ("patch", "frame", "token")
# Cross-modal scores average the top 1/TOPK_DIV patches (49 of 196) or frames (2 of 8).
TOPK_DIV = 4
# Backbone layers fused by the spatio-temporal reasoning (CLIP ViT-B/16 blocks 3, 7, 11).
NUM_LAYERS = 3


class PreNormAttention(nn.Module):
    """Multi-head attention on LayerNorm'd inputs (one norm for q, k, v) plus the query residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.heads, inner = HEADS, HEADS * (dim // HEAD_DIV)
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(ATTN_DROPOUT))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, q: torch.Tensor, kv: Optional[torch.Tensor] = None) -> torch.Tensor:
        """q [B, L, C], kv [B, M, C] (default q) -> [B, L, C]."""
        nq = self.norm(q)
        nkv = nq if kv is None else self.norm(kv)
        out = F.scaled_dot_product_attention(self._split(self.to_q(nq)), self._split(self.to_k(nkv)),
                                             self._split(self.to_v(nkv)))
        return self.to_out(out.transpose(1, 2).flatten(2)) + q


def _mlp(dim: int) -> nn.Sequential:
    hidden = dim // MLP_DIV
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(MLP_DROPOUT),
                         nn.Linear(hidden, dim), nn.Dropout(MLP_DROPOUT))


class ReasoningBlock(nn.Module):
    """Reference `Transformer_v1` (depth 1): attention of q over kv (default: self), then MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.attn = PreNormAttention(dim)
        self.mlp = _mlp(dim)

    def forward(self, q: torch.Tensor, kv: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.attn(q, kv)
        return self.mlp(x) + x


class SpatioTemporalBlock(nn.Module):
    """Reference `Transformer_v3` (depth 1) on [B*T, 1+N, C]: patches attend within their frame,
    class tokens across the T frames, then a shared MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.attn_s = PreNormAttention(dim)
        self.attn_t = PreNormAttention(dim)
        self.mlp = _mlp(dim)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        cls = self.attn_t(x[:, 0].unflatten(0, (-1, t))).flatten(0, 1)
        x = torch.cat([cls.unsqueeze(1), self.attn_s(x[:, 1:])], dim=1)
        return self.mlp(x) + x


def _topk_mean(sim: torch.Tensor, div: int) -> torch.Tensor:
    """Mean of the top max(1, ⌊size/div⌋) entries along dim 1: [B, L, n_way] -> [B, n_way]."""
    return sim.topk(max(1, sim.shape[1] // div), dim=1).values.mean(1)


@HEAD_REGISTRY.register()
class EMPNet(nn.Module):
    """EMP-Net head on three token maps `hidden` [N, T, S, C_l] (CLIP ViT-B/16 blocks 3/7/11).

    1. Skip-fused spatio-temporal reasoning: x = ST1(h1); x = ST2(x + h2); x = ST3(x + h3) on
       [class token; patches] per frame (HEAD.EMP_CLS_TOKEN: the maps carry the class token at
       index 0; otherwise the frame's token mean stands in). Widths HEAD.EMP_HIDDEN_DIMS are
       projected to C = the backbone width.
    2. Levels: patch [N·T, S, C], frame [N, T, C] (patch mean), token [N, T, C] (class tokens);
       intra-video reasoning token -> patch (with its frame's token) -> frame (+ patch mean).
    3. Text: class names (`class_text`, one per episode class) through TEXT.TEMPLATES (training:
       one at random; testing: their mean) and the frozen TEXT.ENCODER, cached, then `text_proj`
       to C. Cross-modal probabilities per level = softmax over classes of the cosine to each
       class text (patch: top S/4 patches, frame: top T/4 frames, token: mean over frames), for
       support and query clips.
    4. Supports are averaged per class (MERGE_BEFORE), fused with their class text (attention
       over [tokens; text]); queries pass the same fusion blocks as self-attention.
    5. OTAM (HEAD.OTAM_LAMBDA, 0.5 in EMP-Net) per level; softmax over classes.
    Output: {"logits": log of the mean of the six query probability maps [N*Q, n_way],
    "prob_<level>" / "prob_<level>_text" (text maps for support then query rows), and
    "loss_<level>" / "loss_<level>_text": cross-entropy per map over the rows whose labels are
    known: support rows always, query rows when `query_labels` is passed (training)}.

    Reference bugs, fixed: (a) its 5-shot real-label -> text mapping scans only the first five
    (shuffled) supports, leaving other classes with the dataset's class-0 text; here class c's
    text is `class_text[c]` and each support's is that of its label (no switch: the buggy
    result depends on a dataset class the head never sees). (b) its losses apply cross-entropy
    to softmax outputs; HEAD.EMP_CE_ON_PROBS True reproduces that, False uses log-probabilities.
    (c) it returns probability maps as "logits"; here `logits` are log-probabilities, so the
    arg-max (its prediction) is unchanged and cross-entropy on them is well defined.

    Built from a config or from its arguments (`@configurable`; the defaults are the config's: EMP-Net's
    own settings set lam 0.5). Not parameter-free: the reasoning, fusion and text-projection
    layers must be meta-trained (the text encoder is frozen and not part of the head's parameters).
    """

    PARAMETER_FREE = False
    # Reads the backbone's `hidden` token maps only: its pooled path (VideoViT's fc_norm) gets no gradient.
    FIND_UNUSED_PARAMETERS = True

    @configurable
    def __init__(self, in_dim: int, text_encoder: TextEncoder, templates: Sequence[str] = ("a video of {}",),
                 hidden_dims: Sequence[int] = (), cls_token: bool = False, ce_on_probs: bool = False,
                 lam: float = 0.1):
        super().__init__()
        widths = list(hidden_dims) or [in_dim] * NUM_LAYERS
        if len(widths) != NUM_LAYERS:
            raise ValueError(f"EMPNet hidden_dims (HEAD.EMP_HIDDEN_DIMS): expected {NUM_LAYERS} widths or [], "
                             f"got {widths}")
        if in_dim % HEAD_DIV:
            raise ValueError(f"EMPNet: backbone width {in_dim} must be a multiple of {HEAD_DIV}")
        if not templates:
            raise ValueError("EMPNet templates (TEXT.TEMPLATES): expected at least one, got []")
        self.cls_token, self.ce_on_probs, self.lam = cls_token, ce_on_probs, lam
        self.templates = list(templates)
        self.text_encoder = text_encoder
        self.hidden_proj = nn.ModuleList(nn.Identity() if w == in_dim else nn.Linear(w, in_dim)
                                         for w in widths)
        self.spatiotemporal = nn.ModuleList(SpatioTemporalBlock(in_dim) for _ in range(NUM_LAYERS))
        self.inter = nn.ModuleDict({level: ReasoningBlock(in_dim) for level in LEVELS})
        self.fusion = nn.ModuleDict({level: ReasoningBlock(in_dim) for level in LEVELS})
        self.text_proj = nn.Linear(self.text_encoder.dim, in_dim)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int) -> Dict:
        h = cfg.HEAD
        return {"in_dim": in_dim, "text_encoder": TextEncoder.from_cfg(cfg),
                "templates": cfg_templates(cfg),
                "hidden_dims": tuple(h.EMP_HIDDEN_DIMS), "cls_token": h.EMP_CLS_TOKEN,
                "ce_on_probs": h.EMP_CE_ON_PROBS, "lam": h.OTAM_LAMBDA}

    def _layer_tokens(self, out: BackboneOutput) -> List[torch.Tensor]:
        """The three hidden maps as [N*T, 1+S, C] with the class token first."""
        if out.hidden is None or len(out.hidden) != NUM_LAYERS:
            got = "none" if out.hidden is None else len(out.hidden)
            raise ValueError(f"EMPNet: needs {NUM_LAYERS} hidden token maps (e.g. VIT.HIDDEN_LAYERS "
                             f"[3, 7, 11]), got {got}")
        maps = []
        for proj, x in zip(self.hidden_proj, out.hidden):
            x = proj(x)
            if not self.cls_token:
                x = torch.cat([x.mean(2, keepdim=True), x], dim=2)
            maps.append(x.flatten(0, 1))
        return maps

    def _levels(self, out: BackboneOutput) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reasoned patch [N, T, S, C], frame [N, T, C] and token [N, T, C] features."""
        maps = self._layer_tokens(out)
        n, t = out.hidden[0].shape[:2]
        x = self.spatiotemporal[0](maps[0], t)
        for block, h in zip(self.spatiotemporal[1:], maps[1:]):
            x = block(x + h, t)
        patch, token = x[:, 1:], x[:, 0].unflatten(0, (n, t))
        frame = patch.unflatten(0, (n, t)).mean(2)
        token = self.inter["token"](token)
        patch = self.inter["patch"](torch.cat([token.flatten(0, 1).unsqueeze(1), patch], dim=1))[:, 1:]
        patch = patch.unflatten(0, (n, t))
        frame = self.inter["frame"](frame + patch.mean(2))
        return patch, frame, token

    def class_text_features(self, class_text: List[str], device: torch.device) -> torch.Tensor:
        """Projected text embedding of each episode class, in class order: [n_way, C]."""
        templates = [random.choice(self.templates)] if self.training else self.templates
        emb = torch.stack([self.text_encoder.encode(class_text, t) for t in templates]).mean(0)
        return self.text_proj(emb.to(device=device, dtype=self.text_proj.weight.dtype))

    def _fuse_support(self, level: str, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """x [n_way, L, C] attends to [x; its class text]; queries are x + text."""
        text = text.unsqueeze(1)
        return self.fusion[level](x + text, torch.cat([x, text], dim=1))

    def _loss(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(scores.softmax(-1) if self.ce_on_probs else scores, labels)

    def _match_scores(self, patch: torch.Tensor, frame: torch.Tensor, token: torch.Tensor, n_s: int,
                      support_labels: torch.Tensor, n_way: int,
                      text: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Class prototypes fused with text vs fused queries: −OTAM distance per level [Q, n_way]."""
        n_patches = patch.shape[2]
        protos = {name: class_prototypes(x[:n_s], support_labels, n_way)
                  for name, x in zip(LEVELS, (patch, frame, token))}
        s_patch = protos["patch"].transpose(1, 2).flatten(0, 1)                  # [n_way*S, T, C]
        s_patch = self._fuse_support("patch", s_patch, text.repeat_interleave(n_patches, 0))
        support = {"patch": s_patch.unflatten(0, (n_way, n_patches)).mean(1)}    # [n_way, T, C]
        for name in ("frame", "token"):
            support[name] = self._fuse_support(name, protos[name], text)
        q_patch = self.fusion["patch"](patch[n_s:].transpose(1, 2).flatten(0, 1))
        query = {"patch": q_patch.unflatten(0, (-1, n_patches)).mean(1),
                 "frame": self.fusion["frame"](frame[n_s:]),
                 "token": self.fusion["token"](token[n_s:])}
        return {name: -otam_distance(query[name], support[name], self.lam) for name in LEVELS}

    def forward(self, support: ClipFeatures, support_labels: torch.Tensor,
                query: ClipFeatures, n_way: int,
                class_text: Optional[List[str]] = None,
                query_labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        check_support_labels(support_labels, n_way)
        if class_text is None or len(class_text) != n_way:
            raise ValueError(f"EMPNet: needs class_text, one class name per episode class ({n_way}), "
                             f"got {class_text!r}")
        n_s = len(support_labels)
        patch, frame, token = self._levels(BackboneOutput.cat([as_backbone_output(support),
                                                               as_backbone_output(query)]))
        text = self.class_text_features(class_text, frame.device)
        text_scores = {
            "patch": _topk_mean(reference_cosine(patch, text).mean(1), TOPK_DIV),
            "frame": _topk_mean(reference_cosine(frame, text), TOPK_DIV),
            "token": reference_cosine(token, text).mean(1),
        }
        match_scores = self._match_scores(patch, frame, token, n_s, support_labels, n_way, text)

        out = {}
        for name in LEVELS:
            out[f"prob_{name}"] = match_scores[name].softmax(-1)
            out[f"prob_{name}_text"] = text_scores[name].softmax(-1)
        query_probs = [out[f"prob_{name}"] for name in LEVELS]
        query_probs += [out[f"prob_{name}_text"][n_s:] for name in LEVELS]
        out["logits"] = torch.stack(query_probs).mean(0).clamp_min(1e-12).log()
        labels = support_labels if query_labels is None else torch.cat([support_labels, query_labels])
        for name in LEVELS:
            out[f"loss_{name}_text"] = self._loss(text_scores[name][: len(labels)], labels)
            if query_labels is not None:
                out[f"loss_{name}"] = self._loss(match_scores[name], query_labels)
        return out
