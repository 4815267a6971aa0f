"""Model statistics: parameters, trainable parameters and fvcore FLOPs per clip.

FLOPs follow fvcore (and PySlowFast's reports): one fused multiply-add counts as one FLOP. fvcore
has no rule for `aten::scaled_dot_product_attention`; it is counted here as its two matrix
products (B*H*L*S*(E + Ev)).
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn

logger = logging.getLogger(__name__)


def count_parameters(model: nn.Module) -> Tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def clip_shapes(cfg: CfgNode, crop_size: Optional[int] = None) -> List[Tuple[int, int, int, int]]:
    """(C, T, H, W) of each pathway of one clip: SlowFast's slow pathway has NUM_FRAMES / ALPHA
    frames (MODEL.ARCH in MODEL.MULTI_PATHWAY_ARCH), single-pathway models one tensor."""
    crop = crop_size or cfg.DATA.TRAIN_CROP_SIZE
    frames = cfg.DATA.NUM_FRAMES
    if cfg.MODEL.ARCH in cfg.MODEL.MULTI_PATHWAY_ARCH:
        lengths = [frames // cfg.SLOWFAST.ALPHA, frames]
    else:
        lengths = [frames]
    channels = cfg.DATA.INPUT_CHANNEL_NUM
    if len(channels) < len(lengths):
        raise ValueError(f"DATA.INPUT_CHANNEL_NUM {channels}: one entry per pathway ({len(lengths)}) expected")
    return [(c, t, crop, crop) for c, t in zip(channels, lengths)]


def _sdpa_flops(inputs, outputs) -> int:
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


class _TensorOutputs(nn.Module):
    """Wraps a model whose output is a tensor, a dict or a BackboneOutput so that tracing sees a
    tuple of tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: List[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        out = self.model(inputs)
        if torch.is_tensor(out):
            return (out,)
        values = out.values() if isinstance(out, dict) else vars(out).values()
        return tuple(v for v in values if torch.is_tensor(v))


def flops_per_clip(model: nn.Module, shapes: Sequence[Tuple[int, int, int, int]]) -> float:
    """fvcore GFLOPs of `model(inputs)` on one clip with pathway `shapes` (C, T, H, W), in eval mode."""
    device = next(model.parameters(), torch.empty(0)).device
    inputs = [torch.zeros(1, *shape, device=device) for shape in shapes]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(_TensorOutputs(model), (inputs,))
            analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flops)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            flops = analysis.total()
    finally:
        model.train(was_training)
    return flops / 1e9


def model_stats(model: nn.Module, cfg: CfgNode, crop_size: Optional[int] = None) -> Dict[str, float]:
    """`params`, `trainable` (counts of the whole model) and `gflops`: the cost of encoding one clip,
    i.e. of `model.backbone` where there is one (few-shot and distillation models take episodes or
    batches, and a classifier's linear head adds well under 0.01 GFLOPs)."""
    total, trainable = count_parameters(model)
    encoder = getattr(model, "backbone", model)
    return {"params": total, "trainable": trainable, "gflops": flops_per_clip(encoder, clip_shapes(cfg, crop_size))}


def log_model_info(model: nn.Module, cfg: CfgNode) -> Dict[str, float]:
    """Log parameters, trainable parameters and GFLOPs per clip (the start of run_net)."""
    stats = model_stats(model, cfg)
    shapes = " + ".join("x".join(map(str, s)) for s in clip_shapes(cfg))
    logger.info("Model %s: %s parameters, %s trainable, %.2f GFLOPs per %s clip",
                cfg.MODEL.MODEL_NAME, f"{stats['params']:,}", f"{stats['trainable']:,}", stats["gflops"], shapes)
    return stats
