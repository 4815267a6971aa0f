"""Registries of backbones, heads and meta-architectures, and the functions that build them."""
import torch
from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry

from ego_fsar.utils.env import device_for

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """Backbones: `forward(inputs: List[Tensor[B,C,T,H,W]]) -> BackboneOutput`,
with `out_dim` (width of `pooled`/`frames`). Built as `cls(cfg)`."""

HEAD_REGISTRY = Registry("HEAD")
HEAD_REGISTRY.__doc__ = """Heads. Classification heads map features to logits; few-shot heads map
`(support, support_labels, query, n_way, class_text=None)` to `{"logits": [N*Q, n_way], ...}`.
Built as `cls(cfg)`."""

MODEL_REGISTRY = Registry("MODEL")
MODEL_REGISTRY.__doc__ = """Meta-architectures (classifier, few-shot model, methods). Built as `cls(cfg)`;
`forward` returns a dict (`logits`, ...). Each exposes `.backbone`."""


def build_backbone(cfg: CfgNode, name: str = "") -> torch.nn.Module:
    """Build `name` (default: `backbone_name(cfg)`) from BACKBONE_REGISTRY."""
    return BACKBONE_REGISTRY.get(name or backbone_name(cfg))(cfg)


def backbone_name(cfg: CfgNode) -> str:
    """The backbone a config uses: `MODEL.BACKBONE`, else the meta-architecture's default."""
    if cfg.MODEL.BACKBONE:
        return cfg.MODEL.BACKBONE
    return getattr(MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME), "BACKBONE", "") or cfg.MODEL.MODEL_NAME


def backbone_dim(cfg: CfgNode) -> int:
    """Width D of the configured backbone's `pooled`/`frames`, computed without building it."""
    return BACKBONE_REGISTRY.get(backbone_name(cfg)).out_dim_from_cfg(cfg)


def build_head(cfg: CfgNode, name: str = "", in_dim: int = None) -> torch.nn.Module:
    """Build `name` (default `HEAD.NAME`) from HEAD_REGISTRY as `cls(cfg, in_dim)`.

    `in_dim` defaults to the configured backbone's output width.
    """
    return HEAD_REGISTRY.get(name or cfg.HEAD.NAME)(cfg, in_dim if in_dim is not None else backbone_dim(cfg))


def build_model(cfg: CfgNode, gpu_id: int = None) -> torch.nn.Module:
    """Build `MODEL.MODEL_NAME` and move it to this process's device (CPU when NUM_GPUS is 0).

    Data-parallel wrapping is done by the engine (see `ego_fsar.engine.trainer.build_train_model`).
    """
    model = MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME)(cfg)
    if cfg.NUM_GPUS > 0:
        if gpu_id is not None:
            torch.cuda.set_device(gpu_id)
        model = model.to(device_for(cfg))
    return model
