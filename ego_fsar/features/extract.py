"""Backbone outputs of dataset items: the extraction that the episodic test's feature cache and the
on-disk feature store share (so a stored split equals the in-memory cache bit for bit).

`extract_store` writes the shards of this process (rank r of W: shards r, r + W, ...) that are not
on disk yet; an unreadable item is listed in its shard's `failed` with the reason.
"""
import sys
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ego_fsar.datasets.utils import DecodeError, SkippedItem, collate_skipping
from ego_fsar.engine.common import inputs_to, progress
from ego_fsar.models import BackboneOutput
from ego_fsar.models.backbones.masking import clip_tube_masks
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for
from ego_fsar.utils.logging import get_logger

from . import store as fs

logger = get_logger(__name__)


def backbone_views(backbone: torch.nn.Module, inputs: List[torch.Tensor], clips: Sequence[int],
                   cfg: CfgNode) -> List[BackboneOutput]:
    """Backbone outputs of a batch of clips (dataset indices `clips`): one unmasked view, or
    TEST.NUM_MASKED_VIEWS views under the clips' tube masks of MASK.RATIO."""
    views = cfg.TEST.NUM_MASKED_VIEWS
    if views <= 0:
        return [backbone(inputs)]
    if not hasattr(backbone, "token_grid"):
        raise ValueError(f"TEST.NUM_MASKED_VIEWS {views}: masked inference needs a transformer backbone that takes "
                         f"tube masks (VideoViT), not {type(backbone).__name__}; set TEST.NUM_MASKED_VIEWS 0")
    grid = backbone.token_grid(inputs)
    return [backbone(inputs, clip_tube_masks(cfg.MASK.RATIO, cfg.RNG_SEED, clips, v, grid).to(inputs[0].device))
            for v in range(views)]


def cat_views(batches: List[List[BackboneOutput]]) -> Optional[List[BackboneOutput]]:
    """Per view, the concatenation of the batches' outputs of that view (None when there are none)."""
    return [BackboneOutput.cat(list(view)) for view in zip(*batches)] if batches else None


def _collate_keeping_skipped(items) -> Tuple[Dict, List[SkippedItem]]:
    return collate_skipping(items), [it for it in items if isinstance(it, SkippedItem)]


def process_batch_size(cfg: CfgNode) -> int:
    """Clips per forward of this process: its share of TEST.BATCH_SIZE."""
    return max(1, cfg.TEST.BATCH_SIZE // du.get_world_size())


def chunks(items: Sequence[int], size: int) -> List[List[int]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


class FeatureBatch(NamedTuple):
    """A batch's readable dataset `items`, their backbone outputs `views` on CPU (one per view, see
    `backbone_views`; None when no item was readable), their collated `meta`, and the `skipped` items."""

    items: List[int]
    views: Optional[List[BackboneOutput]]
    meta: Dict
    skipped: List[SkippedItem]


@torch.no_grad()
def iter_features(backbone: torch.nn.Module, dataset: Dataset, batches: List[List[int]], cfg: CfgNode
                  ) -> Iterator[FeatureBatch]:
    """A FeatureBatch for each batch of dataset items in `batches`, in order."""
    device = device_for(cfg)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=cfg.DATA_LOADER.NUM_WORKERS,
                        collate_fn=_collate_keeping_skipped)
    for items, (batch, skipped) in zip(batches, loader):
        bad = {s.index for s in skipped}
        views = None
        if "inputs" in batch:
            inputs = inputs_to(batch["inputs"], device, cfg.TRAIN.CHANNELS_LAST)
            views = [v.to("cpu") for v in backbone_views(backbone, inputs, batch["index"].tolist(), cfg)]
        yield FeatureBatch([i for i in items if i not in bad], views, batch.get("meta", {}), skipped)


def extract_readable(backbone: torch.nn.Module, dataset: Dataset, indices: Sequence[int], cfg: CfgNode,
                     desc: str) -> Tuple[Optional[List[BackboneOutput]], List[int]]:
    """Backbone outputs (on CPU, one per view, see `backbone_views`; None when there are none) of the
    readable items among `dataset[i]` for `indices`, computed by this process, and those items
    (unreadable ones are skipped)."""
    batches = chunks(indices, process_batch_size(cfg))
    outputs, read = [], []
    for batch in progress(iter_features(backbone, dataset, batches, cfg), desc, total=len(batches)):
        if batch.views is not None:
            outputs.append(batch.views)
            read.extend(batch.items)
    return cat_views(outputs), read


def _failure_reason(dataset, skipped: SkippedItem) -> str:
    """Why item `skipped.index` could not be read: the error of one more attempt."""
    try:
        dataset.load(skipped.index)
    except DecodeError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 (any reader error is the reason to record)
        return f"{type(e).__name__}: {e}"
    return f"unreadable after DATA_LOADER.MAX_RETRIES {dataset.cfg.DATA_LOADER.MAX_RETRIES} retries ({skipped.path})"


def _rows(dataset, batch: FeatureBatch) -> List[Dict]:
    """Index entries of the readable items of `batch`."""
    names = getattr(dataset, "names", None)
    rows = []
    for k, item in enumerate(batch.items):
        clip, temporal, spatial = (int(batch.meta[key][k]) for key in ("clip_index", "temporal_index", "spatial_index"))
        label = dataset.labels[clip]
        rows.append({"item": item, "clip": clip, "name": names[clip] if names else "", "meta": dataset.clip_meta(clip),
                     "label": label if isinstance(label, dict) else int(label),
                     "path": dataset.clip_source(clip).path, "frames": dataset.frame_indices(clip, temporal).tolist(),
                     "temporal": temporal, "spatial": spatial})
    return rows


def _clip_bar(total: int, desc: str):
    """Progress bar in clips (rate and ETA) on the master process; a silent one elsewhere."""
    return tqdm(total=total, desc=desc, unit="clip", file=sys.stderr, dynamic_ncols=True, mininterval=2.0,
                disable=not du.is_master_proc())


def extract_store(backbone: torch.nn.Module, dataset: Dataset, cfg: CfgNode, store_dir: str,
                  identity: Dict) -> List[int]:
    """Write this process's missing shards of the store of `dataset` at `store_dir` (store.json
    written or checked against `identity` by the master first). Returns the shards written."""
    size, total = cfg.FEATURES.SHARD_SIZE, len(dataset)
    header = {"version": fs.FORMAT_VERSION, "identity": identity, "shard_size": size, "num_items": total,
              "views": max(1, cfg.TEST.NUM_MASKED_VIEWS)}
    if du.is_master_proc():
        fs.open_for_writing(store_dir, header)
    du.synchronize()
    rank, world = du.get_rank(), du.get_world_size()
    todo = [s for s in range(rank, fs.num_shards(total, size), world) if not fs.shard_exists(store_dir, s)]
    per_shard = [chunks(fs.shard_items(s, total, size), process_batch_size(cfg)) for s in todo]
    batches = [b for shard in per_shard for b in shard]
    logger.info("Feature store %s: %d of %d shards to extract here (rank %d of %d), %d items each",
                store_dir, len(todo), fs.num_shards(total, size), rank, world, size)
    backbone.eval()
    stream = iter_features(backbone, dataset, batches, cfg)
    with _clip_bar(sum(len(b) for b in batches), f"features (rank {rank} of {world})") as bar:
        for shard, shard_batches in zip(todo, per_shard):
            outputs, rows, failed = [], [], []
            for _ in shard_batches:
                batch = next(stream)
                if batch.views is not None:
                    outputs.append(batch.views)
                rows += _rows(dataset, batch)
                failed += [{"item": s.index, "path": s.path, "reason": _failure_reason(dataset, s)}
                           for s in batch.skipped]
                bar.update(len(batch.items) + len(batch.skipped))
            fs.write_shard(store_dir, shard, cat_views(outputs), rows, failed)
    du.synchronize()
    return todo
