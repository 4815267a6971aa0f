"""Datasets: registry, decoders, transforms, samplers and one module per dataset family."""
import importlib
import pkgutil

from .build import DATASET_REGISTRY, build_dataset

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "build":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DATASET_REGISTRY", "build_dataset"]
