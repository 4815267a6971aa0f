"""Meters (PySlowFast's TrainMeter / ValMeter / TestMeter, plus the few-shot EpisodeMeter).

Stats go to `log_json_stats` (written by the master process only) with PySlowFast's field names.
Named scalars (loss, top-k errors, or any extra stat such as `verb_top1_err` or `loss_cls`) are
smoothed by the window median over LOG_PERIOD iterations in iteration logs and averaged over the
epoch's samples in epoch logs.
"""
import datetime
from collections import defaultdict, deque
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import psutil
import torch
from fvcore.common.timer import Timer

from . import metrics
from .logging import get_logger, log_json_stats

logger = get_logger(__name__)

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


# DATA.ENSEMBLE_METHOD -> the `scatter_reduce_` op that combines a video's clip scores.
ENSEMBLE_REDUCE = {"sum": "sum", "max": "amax"}


class VideoEnsemble:
    """Multi-view scores of one task: each video's clip scores combined by sum or max.

    Clip `i` belongs to video `i // num_clips`. video_preds: [num_videos, num_cls];
    video_labels: [num_videos] (or [num_videos, num_cls] multi-hot); clip_count: [num_videos].
    """

    def __init__(self, num_videos: int, num_clips: int, num_cls: int, ensemble_method: str, multi_label: bool):
        self.num_clips = num_clips
        self.reduce = ENSEMBLE_REDUCE[ensemble_method]
        fill = 0.0 if ensemble_method == "sum" else torch.finfo(torch.float32).min
        self.video_preds = torch.full((num_videos, num_cls), fill)
        self.video_labels = torch.zeros((num_videos, num_cls) if multi_label else (num_videos,), dtype=torch.long)
        self.clip_count = torch.zeros(num_videos, dtype=torch.long)

    def update(self, preds: torch.Tensor, labels: torch.Tensor, clip_ids: torch.Tensor) -> None:
        """Add clip scores [B, num_cls] with their labels and global clip indices [B]."""
        if preds.dim() != 2 or preds.size(1) != self.video_preds.size(1):
            raise ValueError(f"expected clip scores [B, {self.video_preds.size(1)}], got {tuple(preds.shape)}")
        preds, labels = preds.detach().float().cpu(), labels.detach().long().cpu()
        vid = torch.as_tensor(clip_ids).long().cpu() // self.num_clips
        seen = (self.clip_count[vid] > 0).view(-1, *[1] * (labels.dim() - 1))
        expected = torch.where(seen, self.video_labels[vid], labels)
        self.video_labels[vid] = labels
        if not torch.equal(self.video_labels[vid], expected):
            raise ValueError("clips of the same video carry different labels")
        self.video_preds.scatter_reduce_(0, vid[:, None].expand_as(preds), preds, self.reduce)
        self.clip_count.index_add_(0, vid, torch.ones_like(vid))

    def scores(self) -> torch.Tensor:
        """Ensembled scores [num_videos, num_cls] over the clips present: max, or the sum scaled to
        num_clips clips (PySlowFast's sum when none is missing); NaN rows for videos without clips."""
        preds = self.video_preds.clone()
        if self.reduce == "sum":
            preds *= self.num_clips / self.clip_count.clamp(min=1)[:, None]
        preds[self.clip_count == 0] = float("nan")
        return preds

    def check_counts(self, name: str) -> None:
        """Warn (PySlowFast-style) about videos that did not get exactly num_clips clips."""
        wrong = torch.nonzero(self.clip_count != self.num_clips).flatten()
        if len(wrong):
            logger.warning("%s: %d videos have a clip count other than %d (first ids %s, counts %s)", name,
                           len(wrong), self.num_clips, wrong[:10].tolist(), self.clip_count[wrong[:10]].tolist())


class TestMeter:
    """Multi-view test: aggregate each video's clip scores, then top-k accuracy (or mAP).

    Clips that could not be read are reported with `add_skipped`; a video is scored on the clips it
    got, and one without any is left out of the metrics. The final record counts `videos_evaluated`,
    `videos_skipped` (no clip read) and `clips_skipped`.

    num_cls: an int for single-task outputs; for dict outputs / labels `{task: num_cls}` (e.g.
    {"verb": 97, "noun": 300}) or a list in the label dict's key order (MODEL.NUM_CLASSES [97, 300]).
    One `VideoEnsemble` per task lives in `self.tasks` (made at the first update). With several
    tasks `finalize_metrics` also reports the joint `action_top{k}_acc` (every task right).
    """

    def __init__(
        self,
        num_videos: int,
        num_clips: int,
        num_cls: Union[int, Sequence[int], Mapping[str, int]],
        ensemble_method: str = "sum",
        multi_label: bool = False,
    ):
        if ensemble_method not in ENSEMBLE_REDUCE:
            raise ValueError(f"DATA.ENSEMBLE_METHOD must be one of {sorted(ENSEMBLE_REDUCE)}, got {ensemble_method!r}")
        self.num_videos, self.num_clips, self.num_cls = num_videos, num_clips, num_cls
        self.ensemble_method = ensemble_method
        self.multi_label = multi_label
        self.tasks: Dict[str, VideoEnsemble] = {}
        self.stats: Dict = {}
        self.clips_skipped = 0

    def _task_sizes(self, tasks: List[str]) -> Dict[str, int]:
        if isinstance(self.num_cls, Mapping):
            sizes = dict(self.num_cls)
        elif isinstance(self.num_cls, int):
            sizes = {metrics.SINGLE_TASK: self.num_cls}
        else:
            sizes = dict(zip(tasks, self.num_cls)) if len(self.num_cls) == len(tasks) else {}
        if set(sizes) != set(tasks):
            raise KeyError(f"TestMeter num_cls {self.num_cls!r} does not match the tasks {tasks}")
        return sizes

    def update_stats(self, preds: metrics.Outputs, labels: metrics.Labels, clip_ids: torch.Tensor) -> None:
        """Add a batch: preds [B, C] (or the model's output dict), labels [B] or `{task: [B]}`,
        clip_ids [B] global clip indices (video `i // num_clips`, PySlowFast's convention)."""
        pairs = metrics.task_pairs(preds, labels)
        if not self.tasks:
            self.tasks = {
                task: VideoEnsemble(self.num_videos, self.num_clips, n, self.ensemble_method, self.multi_label)
                for task, n in self._task_sizes(list(pairs)).items()
            }
        if set(pairs) != set(self.tasks):
            raise KeyError(f"TestMeter holds tasks {sorted(self.tasks)}, got {sorted(pairs)}")
        for task, (scores, target) in pairs.items():
            self.tasks[task].update(scores, target, clip_ids)

    def add_skipped(self, num_clips: int) -> None:
        """Count `num_clips` clips that could not be read (they are in no update_stats)."""
        self.clips_skipped += num_clips

    def video_results(self):
        """(scores, labels) per video, PySlowFast's saved results: scores [num_videos, num_cls] (see
        `VideoEnsemble.scores`; NaN for a video without clips) and labels [num_videos] (or multi-hot
        [num_videos, num_cls]; -1 for a video without clips), or `{task: ...}` dicts of them for dict labels."""
        if not self.tasks:
            raise RuntimeError("TestMeter.video_results called before any update_stats")
        results = {}
        for task, e in self.tasks.items():
            labels = e.video_labels.clone()
            labels[e.clip_count == 0] = -1
            results[task] = (e.scores(), labels)
        if list(results) == [metrics.SINGLE_TASK]:
            return results[metrics.SINGLE_TASK]
        return {task: r[0] for task, r in results.items()}, {task: r[1] for task, r in results.items()}

    def per_class_results(self) -> Dict:
        """Per class id, over the videos that got at least one clip: {"videos", "top1"} (% of the class's
        videos whose top-scoring class is right; EPIC's per-class and mean class accuracy), or for
        multi-label {"videos" (with the class), "ap"} (%); classes without a video are left out. Keyed by
        task first for dict labels (`{"verb": {...}, "noun": {...}}`), as `video_results`."""
        results = {}
        for task, e in self.tasks.items():
            seen = e.clip_count > 0
            scores, labels = e.scores()[seen], e.video_labels[seen]
            if self.multi_label:
                results[task] = {int(c): {"videos": int(labels[:, c].sum()), "ap": 100.0 * metrics.average_precision(
                    scores[:, c].numpy(), labels[:, c].numpy())} for c in range(labels.shape[1]) if labels[:, c].any()}
            else:
                hits = scores.argmax(1) == labels
                results[task] = {int(c): {"videos": int((labels == c).sum()), "top1": 100.0 * hits[labels == c].float().mean().item()}
                                 for c in labels.unique().tolist()}
        return results[metrics.SINGLE_TASK] if list(results) == [metrics.SINGLE_TASK] else results

    def finalize_metrics(self, ks: Sequence[int] = (1, 5)) -> Dict:
        """Log (`_type` "test_final") and return top-k accuracies in percent, or `map` per task, over
        the videos that got at least one clip, with `videos_evaluated`, `videos_skipped`, `clips_skipped`."""
        if not self.tasks:
            raise RuntimeError(f"TestMeter.finalize_metrics called before any update_stats ({self.clips_skipped} "
                               f"clips were skipped as unreadable)")
        for task, ensemble in self.tasks.items():
            ensemble.check_counts(task)
        seen = next(iter(self.tasks.values())).clip_count > 0
        self.stats = {"_type": "test_final"}
        if self.multi_label:
            for task, e in self.tasks.items():
                prefix = "" if task == metrics.SINGLE_TASK else f"{task}_"
                self.stats[f"{prefix}map"] = 100.0 * metrics.mean_average_precision(
                    e.scores()[seen].numpy(), e.video_labels[seen].numpy()
                )
        else:
            preds = {task: e.scores()[seen] for task, e in self.tasks.items()}
            labels = {task: e.video_labels[seen] for task, e in self.tasks.items()}
            accs = metrics.task_topk_accuracies(preds, labels, ks)
            self.stats.update({name: float(acc) for name, acc in accs.items()})
        self.stats.update(videos_evaluated=int(seen.sum()), videos_skipped=int((~seen).sum()),
                          clips_skipped=self.clips_skipped)
        log_json_stats(self.stats)
        return self.stats


class EpisodeMeter:
    """Few-shot episode accuracies: mean and 95% confidence interval.

    ci95 = 1.96 * std / sqrt(n) with the population std (`np.std`, ddof 0), as in the OTAM / TRX /
    MM-CDFSL evaluation code. Accuracies are fractions in [0, 1]; the summary is in percent.
    """

    def __init__(self, way: int, shot: int, query: int):
        self.way, self.shot, self.query = way, shot, query
        self.accuracies: List[float] = []

    def update(self, acc: Union[float, Sequence[float], torch.Tensor]) -> None:
        """Add one episode's accuracy, or several."""
        values = torch.as_tensor(acc, dtype=torch.float64).detach().cpu().numpy().reshape(-1)
        if ((values < 0) | (values > 1)).any():
            raise ValueError(f"episode accuracies must be fractions in [0, 1], got {values.tolist()}")
        self.accuracies.extend(values.tolist())

    def summary(self) -> Dict:
        """`{"_type": "fewshot_test", "acc", "ci95", "episodes", "way", "shot", "query"}` (acc, ci95 in %)."""
        n = len(self.accuracies)
        if n == 0:
            raise RuntimeError("EpisodeMeter.summary called before any update")
        accs = np.asarray(self.accuracies) * 100.0
        return {
            "_type": "fewshot_test",
            "acc": float(accs.mean()),
            "ci95": float(1.96 * accs.std() / np.sqrt(n)),
            "episodes": n,
            "way": self.way,
            "shot": self.shot,
            "query": self.query,
        }
