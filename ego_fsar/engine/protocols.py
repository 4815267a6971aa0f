"""Training protocols: how batches are loaded and fed to the model, chosen by `TRAIN.PROTOCOL`.

The train loop is the same for every protocol; a protocol only says which loader to build for a
split and how one batch becomes `(outputs, labels, batch_size)`.
"""
from typing import Any, Dict, Tuple

import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import loader

from .common import inputs_to, labels_to


class SupervisedProtocol:
    """Classification batches `{"inputs", "label"}` -> `model(inputs)`."""

    @staticmethod
    def loader(cfg: CfgNode, split: str):
        return loader.construct_loader(cfg, split)

    @staticmethod
    def forward(model, batch: Dict, device: torch.device, cfg: CfgNode) -> Tuple[Dict, Any, int]:
        inputs = inputs_to(batch["inputs"], device, cfg.TRAIN.CHANNELS_LAST)
        return model(inputs), labels_to(batch["label"], device), inputs[0].size(0)

    @staticmethod
    def bn_inputs(batch: Dict, device: torch.device, cfg: CfgNode):
        return inputs_to(batch["inputs"], device, cfg.TRAIN.CHANNELS_LAST)


PROTOCOLS = {"supervised": SupervisedProtocol}


def get_protocol(cfg: CfgNode):
    if cfg.TRAIN.PROTOCOL not in PROTOCOLS:
        raise ValueError(f"TRAIN.PROTOCOL must be one of {sorted(PROTOCOLS)}, got {cfg.TRAIN.PROTOCOL!r}")
    return PROTOCOLS[cfg.TRAIN.PROTOCOL]
