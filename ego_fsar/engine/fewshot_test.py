"""Episodic few-shot test: seeded (or frozen) N-way K-shot Q-query episodes on `TEST.DATASET`.

With `FEW_SHOT.USE_FEATURE_CACHE` every clip that any episode uses goes through the backbone once
(deterministic test transform) and all episodes run on the cached `BackboneOutput`s; without it each
episode runs the backbone on its own clips (same numbers, far slower). With `FEW_SHOT.FEATURE_STORE` the
features are read, memory-mapped, from a store that tools/extract_features.py wrote with the same
extraction code (ego_fsar/features), and no backbone is built. Episodes are divided among
ranks and their accuracies gathered, so the figure equals the single-process one exactly. A clip
that cannot be read is skipped and every episode that needs it dropped (counted in the summary).

Masked inference (MM-CDFSL, TEST.NUM_MASKED_VIEWS V > 0): every clip goes through the backbone under V
tube masks of MASK.RATIO, view v of clip c masked by `clip_tube_masks(..., c, v)` (the same in every run,
batch and process); support clips use view 0, queries all V views, whose head probabilities are averaged
(heads that declare `QUERY_VIEWS`, e.g. LogReg).

`EpisodicValidation` runs the same episodes for model selection during training (TRAIN.VAL_PROTOCOL
"episodic"): on DATA.VAL_SPLIT, which may be the test split with a held-out part of each class
(FEW_SHOT.VAL_POOL_FRACTION, `pool_labels`) so that validation and test episodes never share a clip.
"""
import json
import math
import os
import resource
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import default_collate

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import Episode, episodes_for_cfg, split_for_rank
from ego_fsar.datasets.utils import SkippedItem
from ego_fsar.features.extract import backbone_views, cat_views, extract_readable
from ego_fsar.features.identity import dataset_source, run_identity
from ego_fsar.features.store import FeatureStore
from ego_fsar.models import BackboneOutput, build_head
from ego_fsar.models.build import MODEL_REGISTRY
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for
from ego_fsar.utils.logging import get_logger, log_json_stats
from ego_fsar.utils.meters import EpisodeMeter

from .common import inputs_to, progress

logger = get_logger(__name__)
EPISODES_JSON = "episodes.json"
HISTOGRAM_PNG = "episode_accuracy_hist.png"


def _check_trained(head: torch.nn.Module, untrained: str, cfg: CfgNode) -> None:
    """Refuse (or, with TEST.ALLOW_UNTRAINED_HEAD, warn about) testing `head` with weights that no
    checkpoint trained, as `untrained` explains, unless its class declares `PARAMETER_FREE`."""
    if not untrained or getattr(head, "PARAMETER_FREE", False):
        return
    count = sum(p.numel() for p in head.parameters() if p.requires_grad)
    message = (f"HEAD.NAME {type(head).__name__}: this few-shot head has {count:,} trainable parameters "
               f"that no checkpoint trained ({untrained})")
    if not cfg.TEST.ALLOW_UNTRAINED_HEAD:
        raise ValueError(f"{message}. Meta-train it first (MODEL.MODEL_NAME FewShot, TRAIN.PROTOCOL episodic) "
                         f"and test that run's checkpoint, or set TEST.ALLOW_UNTRAINED_HEAD True to test its "
                         f"random weights anyway")
    logger.warning("%s; testing its random weights (TEST.ALLOW_UNTRAINED_HEAD True)", message)


def fewshot_parts(model: torch.nn.Module, cfg: CfgNode):
    """(backbone, few-shot head) of a model: its own head for FewShot models, else `HEAD.NAME` built
    on the backbone's width (e.g. ProtoNet on a pre-trained classifier's backbone).

    A head whose class declares `PARAMETER_FREE = True` predicts the same without training (ProtoNet,
    OTAM, LogReg). Any other head must come from a checkpoint: a head built here, or one whose
    weights the loaded checkpoint lacked (`untrained_head_keys`), raises a ValueError naming the head,
    unless TEST.ALLOW_UNTRAINED_HEAD (then a warning)."""
    inner = du.unwrap(model)
    head = getattr(inner, "fewshot_head", None)
    if head is None:
        head = build_head(cfg, in_dim=inner.backbone.out_dim).to(device_for(cfg))
        untrained = _no_fewshot_head(cfg)
    else:
        untrained = _lacking(getattr(inner, "untrained_head_keys", []))
    _check_trained(head, untrained, cfg)
    return inner.backbone, head


def _no_fewshot_head(cfg: CfgNode) -> str:
    return f"MODEL.MODEL_NAME {cfg.MODEL.MODEL_NAME} has no few-shot head; it was built with random weights"


def _lacking(missing: Sequence[str]) -> str:
    return (f"the checkpoint loaded lacks {len(missing)} of its weights: {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}") if missing else ""


class _HeadOnly(torch.nn.Module):
    """A model holding only its few-shot head (`head.*` keys, as in a FewShot checkpoint), to load the
    test checkpoint's head weights without building the backbone. `untrained_head_keys` as FewShot's."""

    HEAD_KEY_PREFIXES = ("head.",)

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.head = head
        self.untrained_head_keys: List[str] = []
        self.register_load_state_dict_post_hook(_record_missing_head_keys)

    @property
    def fewshot_head(self) -> torch.nn.Module:
        return self.head


def _record_missing_head_keys(module: _HeadOnly, incompatible_keys) -> None:
    module.untrained_head_keys = sorted(incompatible_keys.missing_keys)


def stored_features_head(cfg: CfgNode, in_dim: int) -> torch.nn.Module:
    """HEAD.NAME on features of width `in_dim` (a feature store's), without a backbone: its weights come
    from the test checkpoint (`load_test_checkpoint`'s precedence and checks) when MODEL.MODEL_NAME has a
    few-shot head of its own, as `fewshot_parts` would give them; untrained heads are refused alike."""
    head = build_head(cfg, in_dim=in_dim).to(device_for(cfg))
    if not hasattr(MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME), "fewshot_head"):
        _check_trained(head, _no_fewshot_head(cfg), cfg)
        return head
    holder = _HeadOnly(head)
    logger.info("Loading only the few-shot head (head.*) of the test checkpoint: the features come from the store, "
                "so its backbone weights are reported as unexpected keys")
    cu.load_test_checkpoint(cfg, holder)
    _check_trained(head, _lacking(holder.untrained_head_keys), cfg)
    return head


def _check_query_views(head: torch.nn.Module, cfg: CfgNode) -> None:
    if cfg.TEST.NUM_MASKED_VIEWS > 0 and not getattr(head, "QUERY_VIEWS", False):
        raise ValueError(f"TEST.NUM_MASKED_VIEWS {cfg.TEST.NUM_MASKED_VIEWS}: HEAD.NAME {type(head).__name__} does not "
                         f"average query views (a head declaring QUERY_VIEWS does, e.g. LogReg); set it to 0")


def _episode_parts(views: List[BackboneOutput], support_rows, query_rows):
    """(support, query) of an episode from per-view features: support view 0; query the one view, or the
    list of all views (masked inference)."""
    query = [v.index(query_rows) for v in views]
    return views[0].index(support_rows), (query if len(query) > 1 else query[0])


def extract_features(backbone: torch.nn.Module, dataset, indices: Sequence[int], cfg: CfgNode,
                     desc: str = "features") -> BackboneOutput:
    """Backbone outputs (on CPU) of `dataset[i]` for `indices`, in that order, computed by this process
    (masked inference: the first view); raises when a clip cannot be read."""
    features, clips = extract_readable(backbone, dataset, indices, cfg, desc)
    if len(clips) != len(indices):
        raise RuntimeError(f"{len(indices) - len(clips)} of {len(indices)} clips could not be read (their paths "
                           f"are in the warnings above)")
    return features[0]


def build_feature_cache(backbone, dataset, indices: List[int], cfg: CfgNode
                        ) -> Tuple[Optional[List[BackboneOutput]], Dict[int, int]]:
    """Extract every clip of `indices` (dataset of one view per clip) once, split among ranks, and
    gather the result on all ranks.

    Returns the features, one BackboneOutput per view (see `backbone_views`; None when no clip could be
    read), and the row of each readable clip in them; unreadable clips have no row."""
    rank, world = du.get_rank(), du.get_world_size()
    mine = indices[rank::world]
    gathered = du.all_gather_object(extract_readable(backbone, dataset, mine, cfg, "feature cache"))
    order = [i for _, part in gathered for i in part]
    return cat_views([f for f, _ in gathered if f is not None]), {clip: row for row, clip in enumerate(order)}


def episode_accuracy(head, support: BackboneOutput, query, episode: Episode,
                     class_names, device: torch.device) -> float:
    """Fraction of `episode`'s queries that `head` classifies right, from the support [N*K] and query
    [N*Q] features (a list of views with masked inference; `class_names`: the episode classes' names,
    for heads that read class text)."""
    support_labels = torch.as_tensor(episode.support_labels, device=device)
    query_labels = torch.as_tensor(episode.query_labels, device=device)
    query = [q.to(device) for q in query] if isinstance(query, list) else query.to(device)
    out = head(support.to(device), support_labels, query, episode.n_way, class_text=class_names)
    return (out["logits"].argmax(1) == query_labels).float().mean().item()


def episode_class_names(dataset, episode: Episode) -> Optional[List[str]]:
    """Names of `episode`'s classes in episode order (None when `dataset` has no class names)."""
    names = getattr(dataset, "class_names", None)
    return [names[c] for c in episode.class_ids] if names else None


def _episode_features(backbone, dataset, episode: Episode, cfg: CfgNode, device: torch.device,
                      unreadable: Set[int]) -> Optional[Tuple[BackboneOutput, BackboneOutput]]:
    """(support, query) features of `episode` computed from its clips; None when one cannot be read
    (its index is added to `unreadable`)."""
    items = {i: dataset[i] for i in (*episode.support, *episode.query)}
    bad = {i for i, item in items.items() if isinstance(item, SkippedItem)}
    unreadable.update(bad)
    if bad:
        return None
    clips = [*episode.support, *episode.query]
    views = backbone_views(backbone, inputs_to(default_collate([items[i] for i in clips])["inputs"], device,
                                               cfg.TRAIN.CHANNELS_LAST), clips, cfg)
    rows = torch.arange(len(clips))
    return _episode_parts(views, rows[:len(episode.support)], rows[len(episode.support):])


@torch.no_grad()
def run_episodes(backbone, head, dataset, episodes: List[Episode], cfg: CfgNode,
                 unreadable: Optional[Set[int]] = None, store: Optional[FeatureStore] = None
                 ) -> List[Optional[float]]:
    """Accuracy of each episode of `episodes` (this process's share), in order; None for an episode
    that needs a clip that cannot be read (dropped). The indices of such clips are added to `unreadable`
    when given. With `store`, the features are its rows (its failed items are unreadable clips) and
    `backbone` is not used (may be None)."""
    device = device_for(cfg)
    head.eval()
    _check_query_views(head, cfg)
    unreadable = set() if unreadable is None else unreadable
    cached = store is not None or cfg.FEW_SHOT.USE_FEATURE_CACHE
    if store is None:
        backbone.eval()
    if cached:
        needed = sorted({i for ep in episodes for i in (*ep.support, *ep.query)})
        if store is None:
            needed = sorted({i for part in du.all_gather_object(needed) for i in part})
            features, rows = build_feature_cache(backbone, dataset, needed, cfg)
        else:
            features, rows = store.features()
        unreadable.update(set(needed) - set(rows))
        features = _reduced(head, features, len(rows))
    if cached and getattr(head, "EPISODE_BATCH", False) and cfg.FEW_SHOT.EPISODE_BATCH > 1:
        readable = [ep for ep in episodes if unreadable.isdisjoint((*ep.support, *ep.query))]
        scores = dict(zip((ep.index for ep in readable),
                          _batched_accuracies(head, features, rows, readable, cfg.FEW_SHOT.EPISODE_BATCH, device)))
        return [scores.get(ep.index) for ep in episodes]
    accs = []
    for episode in progress(episodes, "episodes"):
        if not cached:
            parts = _episode_features(backbone, dataset, episode, cfg, device, unreadable)
        elif unreadable.isdisjoint((*episode.support, *episode.query)):
            parts = _episode_parts(features, *(torch.as_tensor([rows[i] for i in clips], dtype=torch.long)
                                               for clips in (episode.support, episode.query)))
        else:
            parts = None
        accs.append(None if parts is None else
                    episode_accuracy(head, *parts, episode, episode_class_names(dataset, episode), device))
    return accs


def _reduced(head, views, num_rows: int, chunk: int = 1024):
    """Per view, the cached (or stored) features of rows 0..num_rows-1 reduced once by the head's
    `reduce_clips` (what it reads of a clip, e.g. ProtoNet's frame mean), `chunk` rows at a time (a
    store is read in pieces); the views unchanged for a head without it."""
    reduce = getattr(head, "reduce_clips", None)
    if reduce is None or views is None or num_rows == 0:
        return views
    return [BackboneOutput.cat([reduce(view.index(torch.arange(start, min(start + chunk, num_rows))))
                                for start in range(0, num_rows, chunk)]) for view in views]


def _batched_accuracies(head, features, rows: Dict[int, int], episodes: List[Episode], size: int,
                        device: torch.device) -> List[float]:
    """Accuracy of each of `episodes` (all readable, one shape), `size` episodes per call of a head that
    declares EPISODE_BATCH (support [E, N*K, ...], labels [E, N*K], query [E, N*Q, ...] -> logits
    [E, N*Q, N]); equal to one `episode_accuracy` call per episode."""
    accs: List[float] = []
    for start in progress(range(0, len(episodes), size), f"episodes ({size} per batch)"):
        batch = episodes[start:start + size]
        support, query = _episode_parts(features, *(
            torch.as_tensor([[rows[i] for i in getattr(ep, part)] for ep in batch], dtype=torch.long)
            for part in ("support", "query")))
        labels, truth = (torch.as_tensor([getattr(ep, part) for ep in batch], device=device)
                         for part in ("support_labels", "query_labels"))
        logits = head(support.to(device), labels, query.to(device), batch[0].n_way)["logits"]
        accs += (logits.argmax(-1) == truth).float().mean(-1).tolist()
    return accs


def _save_outputs(cfg: CfgNode, episodes: List[Episode], accs: List[Optional[float]], summary: Dict) -> None:
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
    ax.hist(np.asarray([a for a in accs if a is not None]) * 100, bins=20, range=(0, 100), color="#4477aa")
    ax.set_xlabel("episode accuracy (%)")
    ax.set_ylabel("episodes")
    ax.set_title(f"{summary['way']}-way {summary['shot']}-shot: {summary['acc']:.2f} ± {summary['ci95']:.2f}")
    fig.tight_layout()
    fig.savefig(os.path.join(cfg.OUTPUT_DIR, HISTOGRAM_PNG), dpi=100)
    plt.close(fig)


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


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_feature_store(cfg: CfgNode, dataset) -> FeatureStore:
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
