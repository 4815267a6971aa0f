"""Training and validation meters (PySlowFast's TrainMeter / ValMeter); the multi-view TestMeter is in
video_meter.py, the few-shot EpisodeMeter in episode_meter.py.

Stats go to `log_json_stats` (written by the master process only) with PySlowFast's field names.
Named scalars (loss, top-k errors, or any extra stat such as `verb_top1_err` or `loss_cls`) are
smoothed by the window median over LOG_PERIOD iterations in iteration logs and averaged over the
epoch's samples in epoch logs.
"""
import datetime
from collections import defaultdict, deque
from typing import Dict, List, Mapping, Optional, Union

import numpy as np
import psutil
import torch
from fvcore.common.timer import Timer

from . import metrics
from .logging import log_json_stats

Scalar = Union[float, torch.Tensor]
# Per-iteration times in the stats: whole iteration, data loading, network (forward/backward/step).
_TIMES = ("dt", "dt_data", "dt_net")


def gpu_mem_usage(use_cuda: bool) -> float:
    """Peak GPU memory allocated by this process in GiB; 0 without CUDA (never calls CUDA then)."""
    if not use_cuda or not torch.cuda.is_available():
        return 0.0
    return torch.cuda.max_memory_allocated() / 1024**3


def cpu_mem_usage() -> str:
    """Used / total host memory, formatted as PySlowFast's RAM field ("12.34/62.80G")."""
    vram = psutil.virtual_memory()
    return f"{(vram.total - vram.available) / 1024**3:.2f}/{vram.total / 1024**3:.2f}G"


def _eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


class ScalarMeter:
    """A scalar's window (median / mean of the last `window_size` values) and weighted global mean."""

    def __init__(self, window_size: int):
        self.deque = deque(maxlen=window_size)
        self.total = 0.0
        self.weight = 0.0

    def reset(self) -> None:
        self.deque.clear()
        self.total = 0.0
        self.weight = 0.0

    def add_value(self, value: float, weight: float = 1.0) -> None:
        self.deque.append(value)
        self.total += value * weight
        self.weight += weight

    def get_win_median(self) -> float:
        return float(np.median(self.deque))

    def get_win_avg(self) -> float:
        return float(np.mean(self.deque))

    def get_global_avg(self) -> float:
        return self.total / self.weight


class _LoopMeter:
    """Timers (iteration, data loading, network) and named scalar stats shared by train and val."""

    def __init__(self, epoch_iters: int, cfg):
        self._cfg = cfg
        self.epoch_iters = epoch_iters
        self.iter_timer = Timer()
        self.data_timer = Timer()
        self.net_timer = Timer()
        self.scalars: Dict[str, ScalarMeter] = defaultdict(lambda: ScalarMeter(cfg.LOG_PERIOD))
        self.times: Dict[str, ScalarMeter] = {name: ScalarMeter(cfg.LOG_PERIOD) for name in _TIMES}
        self.num_samples = 0

    def reset(self) -> None:
        """Forget the stats (and iteration times) of the epoch."""
        self.scalars.clear()
        for meter in self.times.values():
            meter.reset()
        self.num_samples = 0

    def iter_tic(self) -> None:
        """Start timing an iteration (and its data loading)."""
        self.iter_timer.reset()
        self.data_timer.reset()

    def data_toc(self) -> None:
        """The batch is loaded: stop the data timer, start the network timer."""
        self.data_timer.pause()
        self.net_timer.reset()

    def iter_toc(self) -> None:
        """The iteration is done: stop the iteration and network timers and record their seconds."""
        self.iter_timer.pause()
        self.net_timer.pause()
        for name, timer in zip(_TIMES, (self.iter_timer, self.data_timer, self.net_timer)):
            self.times[name].add_value(timer.seconds())

    def _add(self, values: Mapping[str, Optional[Scalar]], mb_size: int) -> None:
        for name, value in values.items():
            if value is not None:
                self.scalars[name].add_value(float(value), mb_size)
        self.num_samples += mb_size

    def _seconds(self, name: str, epoch: bool) -> float:
        """Seconds per iteration of timer `name` (see `_TIMES`): the mean over the epoch (`epoch`) or
        the median of the last LOG_PERIOD iterations; 0 before the first iteration."""
        meter = self.times[name]
        if not meter.deque:
            return 0.0
        return meter.get_global_avg() if epoch else meter.get_win_median()

    def _timing_and_memory(self, epoch: bool) -> Dict:
        """Seconds per iteration of each timer (see `_seconds`) and memory use."""
        return {
            **{name: self._seconds(name, epoch) for name in _TIMES},
            "gpu_mem": f"{gpu_mem_usage(self._cfg.NUM_GPUS > 0):.2f}G",
            "RAM": cpu_mem_usage(),
        }

    def _epoch_averages(self, who: str) -> Dict[str, float]:
        if self.num_samples == 0:
            raise RuntimeError(f"{who}.log_epoch_stats called before any update_stats")
        return {name: m.get_global_avg() for name, m in self.scalars.items()}

    def _iter_due(self, cur_iter: int) -> bool:
        return (cur_iter + 1) % self._cfg.LOG_PERIOD == 0


class TrainMeter(_LoopMeter):
    """Training stats: `_type` "train_iter" every LOG_PERIOD iterations and "train_epoch"."""

    def __init__(self, epoch_iters: int, cfg):
        super().__init__(epoch_iters, cfg)
        self.max_iters = cfg.SOLVER.MAX_EPOCH * epoch_iters
        self.lr = None

    def reset(self) -> None:
        super().reset()
        self.lr = None

    def update_stats(
        self,
        top1_err: Optional[Scalar],
        top5_err: Optional[Scalar],
        loss: Scalar,
        lr: float,
        mb_size: int,
        extra_stats: Optional[Mapping[str, Optional[Scalar]]] = None,
    ) -> None:
        """Record one iteration. Errors may be None (multi-label, or dict labels whose per-task
        errors come in `extra_stats`, e.g. `metrics.task_topk_errors(...)`); `extra_stats` may hold
        any other named scalar (`loss_cls`, `grad_norm`, ...). None values are not recorded."""
        self.lr = lr
        self._add({"loss": loss, "top1_err": top1_err, "top5_err": top5_err, **(extra_stats or {})}, mb_size)

    def log_iter_stats(self, cur_epoch: int, cur_iter: int) -> Optional[Dict]:
        """Log (and return) the window stats every LOG_PERIOD iterations; None otherwise."""
        if not self._iter_due(cur_iter):
            return None
        done = cur_epoch * self.epoch_iters + cur_iter + 1
        stats = {
            "_type": "train_iter",
            "epoch": f"{cur_epoch + 1}/{self._cfg.SOLVER.MAX_EPOCH}",
            "iter": f"{cur_iter + 1}/{self.epoch_iters}",
            "eta": _eta(self._seconds("dt", epoch=False) * (self.max_iters - done)),
            "lr": self.lr,
            **{name: m.get_win_median() for name, m in self.scalars.items()},
            **self._timing_and_memory(epoch=False),
        }
        log_json_stats(stats)
        return stats

    def log_epoch_stats(self, cur_epoch: int, counts: Optional[Mapping[str, int]] = None) -> Dict:
        """Log and return the epoch's sample-weighted mean loss and errors, and `counts` (epoch totals,
        e.g. `kd_missing_teacher`) as they are."""
        stats = {
            "_type": "train_epoch",
            "epoch": f"{cur_epoch + 1}/{self._cfg.SOLVER.MAX_EPOCH}",
            "eta": _eta(self._seconds("dt", epoch=True) * (self.max_iters - (cur_epoch + 1) * self.epoch_iters)),
            "lr": self.lr,
            **self._epoch_averages("TrainMeter"),
            **(counts or {}),
            **self._timing_and_memory(epoch=True),
        }
        log_json_stats(stats)
        return stats


class ValMeter(_LoopMeter):
    """Validation stats: `_type` "val_iter" every LOG_PERIOD iterations and "val_epoch", with the
    minimum over epochs of every error (`min_top1_err`, ...). With DATA.MULTI_LABEL, feed
    `update_predictions` and the epoch stats carry `map`."""

    def __init__(self, max_iter: int, cfg):
        super().__init__(max_iter, cfg)
        self.min_errs: Dict[str, float] = {}
        self.all_preds: List[torch.Tensor] = []
        self.all_labels: List[torch.Tensor] = []

    def reset(self) -> None:
        """Forget the epoch's stats (the minima over epochs are kept)."""
        super().reset()
        self.all_preds, self.all_labels = [], []

    def update_stats(
        self,
        top1_err: Optional[Scalar],
        top5_err: Optional[Scalar],
        mb_size: int,
        extra_stats: Optional[Mapping[str, Optional[Scalar]]] = None,
    ) -> None:
        """Record one batch (see `TrainMeter.update_stats` for None errors and `extra_stats`)."""
        self._add({"top1_err": top1_err, "top5_err": top5_err, **(extra_stats or {})}, mb_size)

    def update_predictions(self, preds: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep multi-label scores [B, C] and multi-hot labels [B, C] for the epoch's mAP."""
        self.all_preds.append(preds.detach().float().cpu())
        self.all_labels.append(labels.detach().cpu())

    def log_iter_stats(self, cur_epoch: int, cur_iter: int) -> Optional[Dict]:
        """Log (and return) the window stats every LOG_PERIOD iterations; None otherwise."""
        if not self._iter_due(cur_iter):
            return None
        stats = {
            "_type": "val_iter",
            "epoch": f"{cur_epoch + 1}/{self._cfg.SOLVER.MAX_EPOCH}",
            "iter": f"{cur_iter + 1}/{self.epoch_iters}",
            "eta": _eta(self._seconds("dt", epoch=False) * (self.epoch_iters - cur_iter - 1)),
            **{name: m.get_win_median() for name, m in self.scalars.items()},
            **self._timing_and_memory(epoch=False),
        }
        log_json_stats(stats)
        return stats

    def log_epoch_stats(self, cur_epoch: int, skipped: int = 0) -> Dict:
        """Log and return the epoch's errors, their minima over epochs, mAP if multi-label, the number
        of samples evaluated and of unreadable ones `skipped`."""
        averages = self._epoch_averages("ValMeter")
        for name, value in averages.items():
            if name.endswith("_err"):
                self.min_errs[name] = min(self.min_errs.get(name, 100.0), value)
        stats = {
            "_type": "val_epoch",
            "epoch": f"{cur_epoch + 1}/{self._cfg.SOLVER.MAX_EPOCH}",
            "samples": self.num_samples,
            "skipped": skipped,
            **averages,
            **{f"min_{name}": value for name, value in self.min_errs.items()},
            **self._timing_and_memory(epoch=True),
        }
        if self._cfg.DATA.MULTI_LABEL:
            if not self.all_preds:
                raise RuntimeError("DATA.MULTI_LABEL is set but ValMeter.update_predictions was never called")
            stats["map"] = 100.0 * metrics.mean_average_precision(
                torch.cat(self.all_preds).numpy(), torch.cat(self.all_labels).numpy()
            )
        log_json_stats(stats)
        return stats
