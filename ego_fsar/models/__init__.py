"""Models: registries, backbones, heads and meta-architectures."""
from . import backbones, heads, methods  # noqa: F401  (registration)
from .build import (
    BACKBONE_REGISTRY,
    HEAD_REGISTRY,
    MODEL_REGISTRY,
    backbone_dim,
    build_backbone,
    build_head,
    build_model,
)
from .outputs import BackboneOutput

__all__ = [
    "BACKBONE_REGISTRY", "HEAD_REGISTRY", "MODEL_REGISTRY", "BackboneOutput",
    "backbone_dim", "build_backbone", "build_head", "build_model",
]
