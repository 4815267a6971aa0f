"""Episodes run on a backbone and a few-shot head: the accuracy of each episode.

With `FEW_SHOT.USE_FEATURE_CACHE` every clip that any episode uses goes through the backbone once
(deterministic test transform) and all episodes run on the cached `BackboneOutput`s; without it each
episode runs the backbone on its own clips (same numbers, far slower). With a feature store
(ego_fsar/features) the features are its rows and the backbone is not run.

Masked inference (MM-CDFSL, TEST.NUM_MASKED_VIEWS V > 0): every clip goes through the backbone under V
tube masks of MASK.RATIO, view v of clip c masked by `clip_tube_masks(..., c, v)` (the same in every run,
batch and process); support clips use view 0, queries all V views, whose head probabilities are averaged
(heads that declare `QUERY_VIEWS`, e.g. LogReg).
"""
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset, default_collate

from ego_fsar.datasets.episodes import Episode
from ego_fsar.datasets.utils import SkippedItem
from ego_fsar.features.extract import backbone_views, cat_views, extract_readable
from ego_fsar.features.store import FeatureStore
from ego_fsar.models import BackboneOutput
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for

from .common import inputs_to, progress


def _check_query_views(head: torch.nn.Module, cfg: CfgNode) -> None:
    if cfg.TEST.NUM_MASKED_VIEWS > 0 and not getattr(head, "QUERY_VIEWS", False):
        raise ValueError(f"TEST.NUM_MASKED_VIEWS {cfg.TEST.NUM_MASKED_VIEWS}: HEAD.NAME {type(head).__name__} does not "
                         f"average query views (a head declaring QUERY_VIEWS does, e.g. LogReg); set it to 0")


def _episode_parts(views: List[BackboneOutput], support_rows, query_rows):
    """(support, query) of an episode from per-view features: support view 0; query the one view, or the
    list of all views (masked inference)."""
    query = [v.index(query_rows) for v in views]
    return views[0].index(support_rows), (query if len(query) > 1 else query[0])


def extract_features(backbone: torch.nn.Module, dataset: Dataset, indices: Sequence[int], cfg: CfgNode,
                     desc: str = "features") -> BackboneOutput:
    """Backbone outputs (on CPU) of `dataset[i]` for `indices`, in that order, computed by this process
    (masked inference: the first view); raises when a clip cannot be read."""
    features, clips = extract_readable(backbone, dataset, indices, cfg, desc)
    if len(clips) != len(indices):
        raise RuntimeError(f"{len(indices) - len(clips)} of {len(indices)} clips could not be read (their paths "
                           f"are in the warnings above)")
    return features[0]


def build_feature_cache(backbone: torch.nn.Module, dataset: Dataset, indices: List[int], cfg: CfgNode
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


def episode_accuracy(head: torch.nn.Module, support: BackboneOutput,
                     query: Union[BackboneOutput, List[BackboneOutput]], episode: Episode,
                     class_names: Optional[List[str]], device: torch.device) -> float:
    """Fraction of `episode`'s queries that `head` classifies right, from the support [N*K] and query
    [N*Q] features (a list of views with masked inference; `class_names`: the episode classes' names,
    for heads that read class text)."""
    support_labels = torch.as_tensor(episode.support_labels, device=device)
    query_labels = torch.as_tensor(episode.query_labels, device=device)
    query = [q.to(device) for q in query] if isinstance(query, list) else query.to(device)
    out = head(support.to(device), support_labels, query, episode.n_way, class_text=class_names)
    return (out["logits"].argmax(1) == query_labels).float().mean().item()


def episode_class_names(dataset: Dataset, episode: Episode) -> Optional[List[str]]:
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
def run_episodes(backbone: Optional[torch.nn.Module], head: torch.nn.Module, dataset: Dataset,
                 episodes: List[Episode], cfg: CfgNode,
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
