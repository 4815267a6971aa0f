"""Training protocols: how batches are loaded and fed to the model, chosen by `TRAIN.PROTOCOL`.

The train loop is the same for every protocol; a protocol only says which loader to build for a
split and how one batch becomes `(outputs, labels, batch_size)`.
"""
from typing import Any, Dict, List, Tuple, Type, Union

import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import loader
from ego_fsar.datasets.loader import EpochLoader

from .common import inputs_to, model_batch_entries, to_device


class SupervisedProtocol:
    """Batches of clips `{"inputs", "label", ...}` -> `model(inputs, **entries)`, where `entries` are the
    batch entries the model declares in `BATCH_INPUTS` (none for a classifier). A batch without
    "label" (unlabelled clips, e.g. for self-supervised or distillation losses) has labels None: the
    loss is then the model's own `loss_*` outputs."""

    @staticmethod
    def loader(cfg: CfgNode, split: str) -> EpochLoader:
        return loader.construct_loader(cfg, split)

    @staticmethod
    def forward(model: torch.nn.Module, batch: Dict, device: torch.device, cfg: CfgNode) -> Tuple[Dict, Any, int]:
        inputs = inputs_to(batch["inputs"], device, cfg.TRAIN.CHANNELS_LAST)
        outputs = model(inputs, **model_batch_entries(model, batch, device))
        labels = to_device(batch["label"], device) if "label" in batch else None
        return outputs, labels, inputs[0].size(0)

    @staticmethod
    def bn_inputs(batch: Dict, device: torch.device, cfg: CfgNode) -> List[torch.Tensor]:
        return inputs_to(batch["inputs"], device, cfg.TRAIN.CHANNELS_LAST)

    @staticmethod
    def accum_steps(cfg: CfgNode) -> int:
        return max(1, cfg.TRAIN.GRAD_ACCUM_STEPS)

    @staticmethod
    def skipped(batch: Dict) -> int:
        """Unreadable samples that the batch's items replaced (training) or that it left out."""
        return int(batch["skipped"])

    @staticmethod
    def is_empty(batch: Dict) -> bool:
        """True for an evaluation batch whose every sample was unreadable (only a `skipped` count)."""
        return "inputs" not in batch


class EpisodicProtocol:
    """Episodes (`FEW_SHOT.WAY/SHOT/QUERY`) -> `model(episode)` -> logits over the episode's classes,
    scored against the query labels. `FEW_SHOT.TRAIN_EPISODES` per epoch (new ones every epoch),
    `FEW_SHOT.VAL_EPISODES` fixed validation episodes, `FEW_SHOT.TASKS_PER_BATCH` episodes per step."""

    @staticmethod
    def loader(cfg: CfgNode, split: str) -> EpochLoader:
        num = cfg.FEW_SHOT.TRAIN_EPISODES if split == cfg.DATA.TRAIN_SPLIT else cfg.FEW_SHOT.VAL_EPISODES
        return loader.construct_episode_loader(cfg, split, num_episodes=num)

    @staticmethod
    def episode_to(batch: Dict, device: torch.device, cfg: CfgNode) -> Dict:
        return {
            "support": inputs_to(batch["support"], device, cfg.TRAIN.CHANNELS_LAST),
            "query": inputs_to(batch["query"], device, cfg.TRAIN.CHANNELS_LAST),
            "support_labels": batch["support_labels"].to(device),
            "query_labels": batch["query_labels"].to(device),
            "n_way": len(batch["class_ids"]),
            "class_names": batch["class_names"],
        }

    @classmethod
    def forward(cls, model: torch.nn.Module, batch: Dict, device: torch.device, cfg: CfgNode) -> Tuple[Dict, Any, int]:
        episode = cls.episode_to(batch, device, cfg)
        return model(episode), episode["query_labels"], episode["query_labels"].numel()

    @classmethod
    def bn_inputs(cls, batch: Dict, device: torch.device, cfg: CfgNode) -> Dict:
        return cls.episode_to(batch, device, cfg)

    @staticmethod
    def accum_steps(cfg: CfgNode) -> int:
        return max(1, cfg.FEW_SHOT.TASKS_PER_BATCH) * max(1, cfg.TRAIN.GRAD_ACCUM_STEPS)

    @staticmethod
    def skipped(batch: Dict) -> int:
        return int(batch["skipped"])

    @staticmethod
    def is_empty(batch: Dict) -> bool:
        """Episodes always hold their clips (unreadable ones are replaced within the class)."""
        return False


PROTOCOLS = {"supervised": SupervisedProtocol, "episodic": EpisodicProtocol}
# A training protocol: one of the classes above (their static methods are the interface).
TrainProtocol = Type[Union[SupervisedProtocol, EpisodicProtocol]]


def get_protocol(cfg: CfgNode) -> TrainProtocol:
    if cfg.TRAIN.PROTOCOL not in PROTOCOLS:
        raise ValueError(f"TRAIN.PROTOCOL must be one of {sorted(PROTOCOLS)}, got {cfg.TRAIN.PROTOCOL!r}")
    return PROTOCOLS[cfg.TRAIN.PROTOCOL]
