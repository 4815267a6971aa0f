"""Episodic few-shot test: seeded (or frozen) N-way K-shot Q-query episodes on `TEST.DATASET`.

The backbone and head come from `head_selection`, the per-episode accuracies from `episode_runner`
(feature cache, masked inference); with `FEW_SHOT.FEATURE_STORE` the features are read, memory-mapped,
from a store that tools/extract_features.py wrote with the same extraction code (ego_fsar/features),
and no backbone is built. Episodes are divided among ranks and their accuracies gathered, so the figure
equals the single-process one exactly. A clip that cannot be read is skipped and every episode that
needs it dropped (counted in the summary). Writes `episodes.json` (every episode's classes and accuracy)
and a histogram of the episode accuracies to OUTPUT_DIR.
"""
import json
import os
import resource
from typing import Dict, List, Optional, Set

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import Episode, episodes_for_cfg, split_for_rank
from ego_fsar.features.identity import dataset_source, run_identity
from ego_fsar.features.store import FeatureStore
from ego_fsar.utils import distributed as du
from ego_fsar.utils.atomic_file import atomic_write
from ego_fsar.utils.episode_meter import EpisodeMeter
from ego_fsar.utils.logging import get_logger, log_json_stats
from ego_fsar.utils.tensorboard import TensorboardWriter

from .episode_runner import run_episodes
from .episodic_validation import pool_labels
from .head_selection import fewshot_parts, stored_features_head

logger = get_logger(__name__)
EPISODES_JSON = "episodes.json"
HISTOGRAM_PNG = "episode_accuracy_hist.png"


def _save_outputs(cfg: CfgNode, episodes: List[Episode], accs: List[Optional[float]], summary: Dict) -> None:
    """Every episode's classes and accuracy (EPISODES_JSON, written atomically), their histogram, and each
    accuracy (%) as TensorBoard's `Test/episode_acc` at its episode index."""
    with TensorboardWriter(cfg) as writer:
        for episode, acc in zip(episodes, accs):
            if acc is not None:
                writer.add_scalars({"Test/episode_acc": 100.0 * acc}, episode.index)
    record = {"summary": summary, "episodes": [
        {"index": ep.index, "class_ids": list(map(int, ep.class_ids)), "acc": acc} for ep, acc in zip(episodes, accs)
    ]}
    atomic_write(os.path.join(cfg.OUTPUT_DIR, EPISODES_JSON), lambda f: json.dump(record, f), mode="w")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(np.asarray([a for a in accs if a is not None]) * 100, bins=20, range=(0, 100), color="#4477aa")
    ax.set_xlabel("episode accuracy (%)")
    ax.set_ylabel("episodes")
    ax.set_title(f"{summary['way']}-way {summary['shot']}-shot: {summary['acc']:.2f} ± {summary['ci95']:.2f}")
    fig.tight_layout()
    fig.savefig(os.path.join(cfg.OUTPUT_DIR, HISTOGRAM_PNG), dpi=100)
    plt.close(fig)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_feature_store(cfg: CfgNode, dataset: Dataset) -> FeatureStore:
    """The store at FEW_SHOT.FEATURE_STORE, refused (StoreMismatchError naming each field) unless it holds
    the features of TEST.DATASET's TEST.SPLIT that this run's backbone, checkpoint and config give."""
    store = FeatureStore(cfg.FEW_SHOT.FEATURE_STORE)
    store.check(run_identity(cfg, dataset_source(cfg, len(dataset))))
    logger.info("Reading features from %s (%d items, %d failed)", cfg.FEW_SHOT.FEATURE_STORE, len(store.rows),
                len(store.failed))
    return store


def episodic_test(cfg: CfgNode, model: Optional[torch.nn.Module]) -> Dict:
    """Run the configured episodes and report `acc = XX.XX ± Y.YY (95% CI, N episodes)`.

    An episode that needs an unreadable clip is dropped: the accuracy is over the other episodes
    (`episodes` in the summary), which also counts `dropped_episodes` and `skipped_clips`.

    With FEW_SHOT.FEATURE_STORE the features are read from that store (`open_feature_store`) and the
    backbone is not run; `model` may then be None (the head is built on the store's width, see
    `stored_features_head`), and the summary adds `peak_rss_mb` (the largest over processes)."""
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    if len(dataset) != len(dataset.labels):
        raise ValueError(
            f"episodic test needs one view per clip: set TEST.NUM_ENSEMBLE_VIEWS 1 and TEST.NUM_SPATIAL_CROPS 1 "
            f"(dataset {cfg.TEST.DATASET} has {len(dataset)} items for {len(dataset.labels)} clips)")
    episodes = episodes_for_cfg(cfg, pool_labels(cfg, dataset.labels, "test"))
    store = open_feature_store(cfg, dataset) if cfg.FEW_SHOT.FEATURE_STORE else None
    if store is not None and model is None:
        backbone, head = None, stored_features_head(cfg, store.in_dim)
    else:
        backbone, head = fewshot_parts(model, cfg)
    mine = split_for_rank(episodes, du.get_rank(), du.get_world_size())
    unreadable: Set[int] = set()
    accs = run_episodes(backbone, head, dataset, mine, cfg, unreadable, store)
    gathered = du.all_gather_object(([(ep.index, acc) for ep, acc in zip(mine, accs)], sorted(unreadable),
                                     peak_rss_mb()))
    by_index = dict(pair for part, _, _ in gathered for pair in part)
    skipped = sorted({i for _, part, _ in gathered for i in part})
    ordered = [by_index[ep.index] for ep in episodes]
    evaluated = [acc for acc in ordered if acc is not None]
    if not evaluated:
        raise RuntimeError(f"no episode could be evaluated: every one of the {len(episodes)} episodes needs one of "
                           f"the {len(skipped)} unreadable clips (dataset indices {skipped[:10]})")
    meter = EpisodeMeter(cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY)
    meter.update(evaluated)
    summary = dict(meter.summary(), dropped_episodes=len(ordered) - len(evaluated), skipped_clips=len(skipped))
    if store is not None:
        summary["peak_rss_mb"] = round(max(rss for _, _, rss in gathered), 1)
    if du.is_master_proc():
        log_json_stats(summary)
        if skipped:
            logger.warning("%d of %d episodes dropped: they need one of %d unreadable clips (dataset indices %s)",
                           summary["dropped_episodes"], len(episodes), len(skipped), skipped[:10])
        logger.info("acc = %.2f ± %.2f (95%% CI, %d episodes)", summary["acc"], summary["ci95"], summary["episodes"])
        _save_outputs(cfg, episodes, ordered, summary)
    return summary
