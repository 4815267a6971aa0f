"""Dataset registry and `build_dataset`."""
from fvcore.common.config import CfgNode
from fvcore.common.registry import Registry
from torch.utils.data import Dataset

DATASET_REGISTRY = Registry("DATASET")
DATASET_REGISTRY.__doc__ = """Datasets, built as `cls(cfg, split)`. Items are dicts: `inputs` (list of
pathway tensors [C,T,H,W]), `label` (int or dict), `index`, `meta`. Each also exposes `labels`
(one label per clip, for episode sampling) and `class_names`."""


def build_dataset(name: str, cfg: CfgNode, split: str) -> Dataset:
    """Build dataset `name` (case-insensitive, e.g. "egotoy", "EpicKitchens") for `split`."""
    names = {n.lower(): n for n, _ in DATASET_REGISTRY}
    if name.lower() not in names:
        raise KeyError(f"dataset {name!r} is not registered; known: {sorted(names.values())}")
    return DATASET_REGISTRY.get(names[name.lower()])(cfg, split)
