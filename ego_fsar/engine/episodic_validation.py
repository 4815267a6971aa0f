"""Episodic validation for model selection during training (TRAIN.VAL_PROTOCOL "episodic").

The same episodes as the test, on DATA.VAL_SPLIT, which may be the test split with a held-out part of
each class (FEW_SHOT.VAL_POOL_FRACTION, `pool_labels`) so that validation and test episodes never share
a clip.
"""
import math
from typing import Dict, Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import episodes_for_cfg, split_for_rank
from ego_fsar.utils import distributed as du
from ego_fsar.utils.episode_meter import EpisodeMeter
from ego_fsar.utils.logging import log_json_stats

from .episode_runner import run_episodes
from .head_selection import fewshot_parts


def pool_labels(cfg: CfgNode, labels: Sequence[int], part: str) -> np.ndarray:
    """Clip labels of the episode pool `part` ("val" or "test") of a labelled pool. With
    FEW_SHOT.VAL_POOL_FRACTION f > 0 and DATA.VAL_SPLIT equal to TEST.SPLIT, ceil(f * n) of the n clips of
    each class (a draw seeded by FEW_SHOT.SEED) form the val part and the others the test part; clips of
    the other part get label -1, which episodes never draw. Otherwise `labels` unchanged."""
    labels = np.asarray(labels)
    fraction = cfg.FEW_SHOT.VAL_POOL_FRACTION
    if fraction <= 0 or cfg.DATA.VAL_SPLIT != cfg.TEST.SPLIT:
        return labels
    if part not in ("val", "test") or fraction >= 1:
        raise ValueError(f"pool part must be 'val' or 'test' and FEW_SHOT.VAL_POOL_FRACTION < 1, got {part!r}, "
                         f"{fraction}")
    rng = np.random.default_rng([cfg.FEW_SHOT.SEED, 1])
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels[labels >= 0]):
        clips = rng.permutation(np.flatnonzero(labels == label))
        held[clips[:math.ceil(fraction * len(clips))]] = True
    return np.where(held if part == "val" else ~held, labels, -1)


class EpisodicValidation:
    """Few-shot validation of a model trained with any protocol (TRAIN.VAL_PROTOCOL "episodic"): its
    backbone and few-shot head as the episodic test runs them (masked views with TEST.NUM_MASKED_VIEWS),
    on FEW_SHOT.VAL_EPISODES fixed episodes of TEST.DATASET's DATA.VAL_SPLIT (its "val" part, see
    `pool_labels`). `validation(model, cur_epoch)` logs and returns the `val_epoch` stats: `acc`, `ci95`
    (%), `episodes` and `top1_err` = 100 - acc (what TRAIN.BEST_METRIC "auto" selects on)."""

    def __init__(self, cfg: CfgNode):
        self.cfg = cfg
        self.dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.DATA.VAL_SPLIT)
        episodes = episodes_for_cfg(cfg, pool_labels(cfg, self.dataset.labels, "val"), cfg.FEW_SHOT.VAL_EPISODES,
                                    episodes_file="")
        self.episodes = split_for_rank(episodes, du.get_rank(), du.get_world_size())

    def __call__(self, model: torch.nn.Module, cur_epoch: int) -> Dict:
        backbone, head = fewshot_parts(model, self.cfg)
        accs = run_episodes(backbone, head, self.dataset, self.episodes, self.cfg)
        evaluated = [acc for part in du.all_gather_object(accs) for acc in part if acc is not None]
        if not evaluated:
            raise RuntimeError(f"no validation episode of {self.cfg.DATA.VAL_SPLIT!r} could be evaluated (epoch "
                               f"{cur_epoch + 1}): see the warnings above for unreadable clips")
        meter = EpisodeMeter(self.cfg.FEW_SHOT.WAY, self.cfg.FEW_SHOT.SHOT, self.cfg.FEW_SHOT.QUERY)
        meter.update(evaluated)
        summary = meter.summary()
        stats = {"_type": "val_epoch", "epoch": f"{cur_epoch + 1}/{self.cfg.SOLVER.MAX_EPOCH}",
                 "acc": summary["acc"], "ci95": summary["ci95"], "episodes": summary["episodes"],
                 "top1_err": 100.0 - summary["acc"]}
        if du.is_master_proc():
            log_json_stats(stats)
        return stats
