"""Episodic few-shot test: seeded (or frozen) N-way K-shot Q-query episodes on `TEST.DATASET`.

With `FEW_SHOT.USE_FEATURE_CACHE` every clip that any episode uses goes through the backbone once
(deterministic test transform) and all episodes run on the cached `BackboneOutput`s; without it each
episode runs the backbone on its own clips (same numbers, far slower). Episodes are divided among
ranks and their accuracies gathered, so the figure equals the single-process one exactly.
"""
import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Subset, default_collate

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import Episode, episodes_for_cfg, split_for_rank
from ego_fsar.models import BackboneOutput, build_head
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for
from ego_fsar.utils.logging import get_logger, log_json_stats
from ego_fsar.utils.meters import EpisodeMeter

from .common import inputs_to, progress

logger = get_logger(__name__)
EPISODES_JSON = "episodes.json"
HISTOGRAM_PNG = "episode_accuracy_hist.png"


def fewshot_parts(model: torch.nn.Module, cfg: CfgNode):
    """(backbone, few-shot head) of a model: its own head for FewShot models, else `HEAD.NAME` built
    on the backbone's width (e.g. ProtoNet on a pre-trained classifier's backbone)."""
    inner = du.unwrap(model)
    head = getattr(inner, "fewshot_head", None)
    if head is None:
        head = build_head(cfg, in_dim=inner.backbone.out_dim).to(device_for(cfg))
    return inner.backbone, head


@torch.no_grad()
def extract_features(backbone: torch.nn.Module, dataset, indices: Sequence[int], cfg: CfgNode,
                     desc: str = "features") -> BackboneOutput:
    """Backbone outputs (on CPU) of `dataset[i]` for `indices`, in that order, computed by this process."""
    device = device_for(cfg)
    batch_size = max(1, cfg.TEST.BATCH_SIZE // du.get_world_size())
    data_loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=False,
                             num_workers=cfg.DATA_LOADER.NUM_WORKERS)
    outputs = []
    for batch in progress(data_loader, desc):
        outputs.append(backbone(inputs_to(batch["inputs"], device, cfg.TRAIN.CHANNELS_LAST)).to("cpu"))
    return BackboneOutput.cat(outputs)


def build_feature_cache(backbone, dataset, indices: List[int], cfg: CfgNode) -> Tuple[BackboneOutput, Dict[int, int]]:
    """Extract every clip of `indices` once, split among ranks, and gather the result on all ranks.

    Returns the features and the row of each dataset index in them."""
    rank, world = du.get_rank(), du.get_world_size()
    mine = indices[rank::world]
    features = extract_features(backbone, dataset, mine, cfg, "feature cache") if mine else None
    gathered = du.all_gather_object((mine, features))
    order = [i for part, _ in gathered for i in part]
    features = BackboneOutput.cat([f for _, f in gathered if f is not None])
    return features, {clip: row for row, clip in enumerate(order)}


def _episode_accuracy(head, support: BackboneOutput, query: BackboneOutput, episode: Episode,
                      class_names, device: torch.device) -> float:
    support_labels = torch.as_tensor(episode.support_labels, device=device)
    query_labels = torch.as_tensor(episode.query_labels, device=device)
    out = head(support.to(device), support_labels, query.to(device), episode.n_way, class_text=class_names)
    return (out["logits"].argmax(1) == query_labels).float().mean().item()


def _class_names(dataset, episode: Episode):
    names = getattr(dataset, "class_names", None)
    return [names[c] for c in episode.class_ids] if names else None


@torch.no_grad()
def run_episodes(backbone, head, dataset, episodes: List[Episode], cfg: CfgNode) -> List[float]:
    """Accuracy of each episode of `episodes` (this process's share), in order."""
    device = device_for(cfg)
    backbone.eval()
    head.eval()
    if cfg.FEW_SHOT.USE_FEATURE_CACHE:
        needed = sorted({i for ep in episodes for i in (*ep.support, *ep.query)})
        needed = sorted({i for part in du.all_gather_object(needed) for i in part})
        features, rows = build_feature_cache(backbone, dataset, needed, cfg)
    accs = []
    for episode in progress(episodes, "episodes"):
        if cfg.FEW_SHOT.USE_FEATURE_CACHE:
            support = features.index(torch.as_tensor([rows[i] for i in episode.support]))
            query = features.index(torch.as_tensor([rows[i] for i in episode.query]))
        else:
            support, query = (
                backbone(inputs_to(default_collate([dataset[i] for i in clips])["inputs"], device,
                                   cfg.TRAIN.CHANNELS_LAST))
                for clips in (episode.support, episode.query)
            )
        accs.append(_episode_accuracy(head, support, query, episode, _class_names(dataset, episode), device))
    return accs


def _save_outputs(cfg: CfgNode, episodes: List[Episode], accs: List[float], summary: Dict) -> None:
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    record = {"summary": summary, "episodes": [
        {"index": ep.index, "class_ids": list(map(int, ep.class_ids)), "acc": acc} for ep, acc in zip(episodes, accs)
    ]}
    with open(os.path.join(cfg.OUTPUT_DIR, EPISODES_JSON), "w") as f:
        json.dump(record, f)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(np.asarray(accs) * 100, bins=20, range=(0, 100), color="#4477aa")
    ax.set_xlabel("episode accuracy (%)")
    ax.set_ylabel("episodes")
    ax.set_title(f"{summary['way']}-way {summary['shot']}-shot: {summary['acc']:.2f} ± {summary['ci95']:.2f}")
    fig.tight_layout()
    fig.savefig(os.path.join(cfg.OUTPUT_DIR, HISTOGRAM_PNG), dpi=100)
    plt.close(fig)


def episodic_test(cfg: CfgNode, model: torch.nn.Module) -> Dict:
    """Run the configured episodes and report `acc = XX.XX ± Y.YY (95% CI, N episodes)`."""
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    if len(dataset) != len(dataset.labels):
        raise ValueError(
            f"episodic test needs one view per clip: set TEST.NUM_ENSEMBLE_VIEWS 1 and TEST.NUM_SPATIAL_CROPS 1 "
            f"(dataset {cfg.TEST.DATASET} has {len(dataset)} items for {len(dataset.labels)} clips)")
    episodes = episodes_for_cfg(cfg, dataset.labels)
    backbone, head = fewshot_parts(model, cfg)
    mine = split_for_rank(episodes, du.get_rank(), du.get_world_size())
    accs = run_episodes(backbone, head, dataset, mine, cfg)
    gathered = du.all_gather_object([(ep.index, acc) for ep, acc in zip(mine, accs)])
    by_index = dict(pair for part in gathered for pair in part)
    ordered = [by_index[ep.index] for ep in episodes]
    meter = EpisodeMeter(cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY)
    meter.update(ordered)
    summary = meter.summary()
    if du.is_master_proc():
        log_json_stats(summary)
        logger.info("acc = %.2f ± %.2f (95%% CI, %d episodes)", summary["acc"], summary["ci95"], summary["episodes"])
        _save_outputs(cfg, episodes, ordered, summary)
    return summary
