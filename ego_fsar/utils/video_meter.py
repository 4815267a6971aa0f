"""Multi-view test meters (PySlowFast's TestMeter): each video's clip scores combined, then top-k
accuracy or mAP, per task for multi-task (EPIC verb/noun) outputs."""
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import torch

from . import metrics
from .logging import get_logger, log_json_stats

logger = get_logger(__name__)


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

    def video_results(self) -> Union[Tuple[torch.Tensor, torch.Tensor],
                                      Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]]:
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
