"""Data loaders (PySlowFast style): batches of clips, and episodes for episodic training.

Per-process batch size = TRAIN.BATCH_SIZE (train and val splits) or TEST.BATCH_SIZE (other splits)
divided by the number of processes (torch.distributed's world size when initialised, else 1). A
DistributedSampler (for one process too) shards, shuffles (training split only) and drops the last
incomplete batch (training split only). Randomness follows RNG_SEED and the epoch alone, so a resumed
run repeats the same epochs: `shuffle_dataset(loader, epoch)` sets the sampler's epoch and reseeds
the loader's generator from (RNG_SEED, rank, epoch); that generator seeds each worker's python, numpy
and torch RNGs, which the datasets' random sampling and augmentation draw from.

Failed samples are reported per batch: `batch["skipped"]` (int) of a clip batch counts the unreadable
samples it covers (replaced by other clips on the training split, dropped on any other split; see
utils.collate_skipping), `skipped` of an episode those its clips replaced. Summing them over an epoch
counts every failure in every worker. A clip batch of a non-training split may hold fewer than
batch-size items, or none: then it is `{"skipped": n}` alone. Each dataset copy also keeps a
FailureTracker that raises past DATA_LOADER.MAX_FAILURES; `shuffle_dataset` resets it every epoch.
"""
from typing import Optional

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ego_fsar.utils import distributed as du

from .build import build_dataset
from .episodes import EpisodeDataset, EpisodeSampler
from .utils import collate_skipping


class EpochLoader(DataLoader):
    """A DataLoader whose order and worker seeds depend only on (`seed`, rank, epoch); see `set_epoch`."""

    def __init__(self, dataset: Dataset, seed: int, **kwargs):
        self.seed = seed
        super().__init__(dataset, generator=torch.Generator().manual_seed(self._epoch_seed(0)), **kwargs)

    def _epoch_seed(self, epoch: int) -> int:
        mix = torch.Generator().manual_seed(self.seed * 1_000_003 + du.get_rank() * 10_007 + epoch)
        return int(torch.randint(2**62, (1,), generator=mix))

    def set_epoch(self, epoch: int) -> None:
        """Sampler order, episodes and worker seeds of epoch `epoch`; a fresh failure count."""
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)
        if isinstance(self.dataset, EpisodeDataset):
            self.dataset.set_epoch(epoch)
        self.generator.manual_seed(self._epoch_seed(epoch))
        failures = getattr(getattr(self.dataset, "dataset", self.dataset), "failures", None)
        if failures is not None:
            failures.reset()


def _loader_kwargs(cfg: CfgNode, persistent: bool = False) -> dict:
    """Workers (DATA_LOADER.NUM_WORKERS, each loading PREFETCH_FACTOR batches ahead, kept across epochs
    when `persistent`), and pinned memory only for a CUDA run (NUM_GPUS 0 never queries CUDA)."""
    pin = cfg.DATA_LOADER.PIN_MEMORY and cfg.NUM_GPUS > 0 and torch.cuda.is_available()
    kwargs = {"num_workers": cfg.DATA_LOADER.NUM_WORKERS, "pin_memory": pin}
    if cfg.DATA_LOADER.NUM_WORKERS > 0:
        kwargs.update(prefetch_factor=cfg.DATA_LOADER.PREFETCH_FACTOR, persistent_workers=persistent)
    return kwargs


def construct_loader(cfg: CfgNode, split: str, dataset: Optional[Dataset] = None) -> EpochLoader:
    """Loader of `split` (a dataset split name, e.g. cfg.DATA.TRAIN_SPLIT); `dataset` defaults to
    TRAIN.DATASET (train and val splits) or TEST.DATASET built for `split`."""
    is_train = split == cfg.DATA.TRAIN_SPLIT
    train_like = split in (cfg.DATA.TRAIN_SPLIT, cfg.DATA.VAL_SPLIT)
    if dataset is None:
        dataset = build_dataset(cfg.TRAIN.DATASET if train_like else cfg.TEST.DATASET, cfg, split)
    world = du.get_world_size()
    total = cfg.TRAIN.BATCH_SIZE if train_like else cfg.TEST.BATCH_SIZE
    if total % world != 0:
        raise ValueError(f"{'TRAIN' if train_like else 'TEST'}.BATCH_SIZE ({total}) must be divisible by the "
                         f"number of processes ({world})")
    sampler = DistributedSampler(dataset, num_replicas=world, rank=du.get_rank(), shuffle=is_train,
                                 seed=cfg.RNG_SEED, drop_last=is_train)
    return EpochLoader(dataset, cfg.RNG_SEED, batch_size=total // world, sampler=sampler, drop_last=is_train,
                       collate_fn=collate_skipping, **_loader_kwargs(cfg, cfg.DATA_LOADER.PERSISTENT_WORKERS))


def construct_episode_loader(cfg: CfgNode, split: str, dataset: Optional[Dataset] = None,
                             num_episodes: Optional[int] = None) -> EpochLoader:
    """Loader of FEW_SHOT.WAY/SHOT/QUERY episodes (FEW_SHOT.TRAIN_QUERY queries on the training split
    when set) of `split` (dataset default: TRAIN.DATASET), one
    episode per item (no batch dimension; see EpisodeDataset), `num_episodes` (FEW_SHOT.TRAIN_EPISODES)
    per epoch divided among processes. Epoch e uses episodes e * num_episodes onwards (FEW_SHOT.SEED), so
    its workers never persist (DATA_LOADER.PERSISTENT_WORKERS): they would keep the first epoch's episodes."""
    if dataset is None:
        dataset = build_dataset(cfg.TRAIN.DATASET, cfg, split)
    query = cfg.FEW_SHOT.QUERY
    if split == cfg.DATA.TRAIN_SPLIT and cfg.FEW_SHOT.TRAIN_QUERY > 0:
        query = cfg.FEW_SHOT.TRAIN_QUERY
    sampler = EpisodeSampler(dataset.labels, cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, query, cfg.FEW_SHOT.SEED)
    num_episodes = cfg.FEW_SHOT.TRAIN_EPISODES if num_episodes is None else num_episodes
    episodes = EpisodeDataset(dataset, sampler, num_episodes, du.get_rank(), du.get_world_size())
    return EpochLoader(episodes, cfg.RNG_SEED, batch_size=None, **_loader_kwargs(cfg))


def shuffle_dataset(loader: EpochLoader, epoch: int) -> None:
    """Prepare `loader` for epoch `epoch` (PySlowFast's name for it); see EpochLoader.set_epoch."""
    loader.set_epoch(epoch)
