"""Unlabelled target-domain clips for MM-CDFSL's two stages, on any clip dataset family.

- `<Family>WithTarget` (stage 1, masked pre-training): the family's labelled clips, each item also
  carrying `target_inputs`, the pathways of one clip of the family's DATA.UNLABELLED_SPLIT (a random one
  at training, with training augmentation; clip `index mod pool size` on other splits).
- `<Family>Unlabelled` (stage 2, distillation): the family's clips of a split, items without `label`,
  so the supervised protocol trains on the model's own losses only.

Families: EgoToy (its unlabelled pool: `write_unlabelled_pool` in egotoy_unlabelled.py, split
"unlabelled") and MMCDFSL (`<target>_unlabel` split files).
"""
from typing import Dict

import numpy as np
from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .egotoy import EgoToy
from .mmcdfsl import MMCDFSL


class WithTargetClips:
    """Mixin for a ClipDataset subclass: items gain `target_inputs` from DATA.UNLABELLED_SPLIT."""

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        if not cfg.DATA.UNLABELLED_SPLIT:
            raise ValueError(f"{type(self).__name__} pairs each clip with an unlabelled target clip: set "
                             f"DATA.UNLABELLED_SPLIT (e.g. 'unlabelled' for EgoToy, 'meccano_unlabel' for MMCDFSL)")
        base = next(c for c in type(self).__mro__[1:] if c is not WithTargetClips and hasattr(c, "load"))
        self.target_pool = base(cfg, cfg.DATA.UNLABELLED_SPLIT)
        self.target_pool.training = self.training

    def load(self, index: int) -> Dict:
        item = super().load(index)
        pool = len(self.target_pool)
        other = int(np.random.randint(pool)) if self.training else index % pool
        item["target_inputs"] = self.target_pool.load(other)["inputs"]
        return item


class WithoutLabels:
    """Mixin for a ClipDataset subclass: items without `label` (unlabelled training data)."""

    def load(self, index: int) -> Dict:
        item = super().load(index)
        del item["label"]
        return item


@DATASET_REGISTRY.register()
class EgoToyWithTarget(WithTargetClips, EgoToy):
    """EgoToy clips, each with an unlabelled target clip (`target_inputs`)."""


@DATASET_REGISTRY.register()
class EgoToyUnlabelled(WithoutLabels, EgoToy):
    """EgoToy clips without labels (split "unlabelled": the target pool)."""


@DATASET_REGISTRY.register()
class MMCDFSLWithTarget(WithTargetClips, MMCDFSL):
    """MM-CDFSL split clips (ego4d_train), each with a clip of DATA.UNLABELLED_SPLIT (`<target>_unlabel`)."""


@DATASET_REGISTRY.register()
class MMCDFSLUnlabelled(WithoutLabels, MMCDFSL):
    """MM-CDFSL split clips without labels (`<target>_unlabel` files)."""
