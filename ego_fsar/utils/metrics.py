"""Top-k metrics (PySlowFast's names), multi-task (EPIC verb/noun/action) accuracy and mAP.

Outputs and labels come in two forms everywhere in ego_fsar: a plain tensor pair (scores `[B, C]`,
labels `[B]`), or a dict of labels such as `{"verb": [B], "noun": [B]}` whose keys name entries of
the model's output dict. `task_pairs` resolves both to one `{task: (scores, labels)}` mapping.
"""
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
from sklearn.metrics import average_precision_score

Outputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]
Labels = Union[torch.Tensor, Mapping[str, torch.Tensor]]

# Task name of single-task outputs (the model's "logits" entry).
SINGLE_TASK = "logits"
# Stat-name prefix of the joint (every task correct) accuracy of multi-task outputs: EPIC's action.
JOINT_TASK = "action"


def task_pairs(outputs: Outputs, labels: Labels) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Pair each task's scores with its labels.

    Dict labels: `{key: (outputs[key], labels[key])}` for every label key. Otherwise one task,
    `{"logits": (scores, labels)}`, where scores is `outputs` itself or `outputs["logits"]`.
    """
    if isinstance(labels, Mapping):
        if not isinstance(outputs, Mapping):
            raise TypeError(f"labels are a dict {sorted(labels)} but outputs are not a dict")
        missing = [k for k in labels if k not in outputs]
        if missing:
            raise KeyError(f"labels have keys {missing} that the model outputs lack (outputs: {sorted(outputs)})")
        return {k: (outputs[k], labels[k]) for k in labels}
    if isinstance(outputs, Mapping):
        if SINGLE_TASK not in outputs:
            raise KeyError(f"outputs need a '{SINGLE_TASK}' entry for plain labels (outputs: {sorted(outputs)})")
        outputs = outputs[SINGLE_TASK]
    return {SINGLE_TASK: (outputs, labels)}


def _topk_hits(preds: torch.Tensor, labels: torch.Tensor, max_k: int) -> torch.Tensor:
    """[max_k, N] bool: (i, j) is True when the i-th ranked class of sample j is its label.

    Rows past the number of classes are False (top-k with k >= C contains every class).
    """
    if preds.size(0) != labels.size(0):
        raise ValueError(f"batch sizes of predictions {tuple(preds.shape)} and labels {tuple(labels.shape)} differ")
    k = min(max_k, preds.size(1))
    top_inds = preds.topk(k, dim=1, largest=True, sorted=True).indices.t()
    hits = top_inds.eq(labels.view(1, -1).to(top_inds.device))
    return torch.cat([hits, hits.new_zeros(max_k - k, hits.size(1))])


def topks_correct(preds: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]) -> List[torch.Tensor]:
    """Number of samples whose label is among the top-k scores, for each k.

    preds: [N, C] scores; labels: [N] class indices. Returns 0-d float tensors, one per k.
    """
    hits = _topk_hits(preds, labels, max(ks))
    return [hits[:k].any(0).float().sum() for k in ks]


def topk_errors(preds: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]) -> List[torch.Tensor]:
    """Top-k error in percent for each k (0-d tensors, ready for `all_reduce`)."""
    return [(1.0 - x / preds.size(0)) * 100.0 for x in topks_correct(preds, labels, ks)]


def topk_accuracies(preds: torch.Tensor, labels: torch.Tensor, ks: Sequence[int]) -> List[torch.Tensor]:
    """Top-k accuracy in percent for each k (0-d tensors)."""
    return [(x / preds.size(0)) * 100.0 for x in topks_correct(preds, labels, ks)]


def multitask_topks_correct(
    preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], ks: Sequence[int] = (1,)
) -> List[torch.Tensor]:
    """Number of samples whose label of every task is within that task's top-k, for each k.

    preds: one [N, C_t] tensor per task (C_t may differ); labels: one [N] tensor per task. With
    verb and noun this is EPIC-Kitchens' action accuracy (action right when verb and noun are).
    """
    max_k = max(ks)
    hits = [_topk_hits(p, y, max_k) for p, y in zip(preds, labels)]
    return [torch.stack([h[:k].any(0) for h in hits]).all(0).float().sum() for k in ks]


def multitask_topk_accuracies(
    preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], ks: Sequence[int]
) -> List[torch.Tensor]:
    """Joint (all tasks right) top-k accuracy in percent for each k."""
    return [(x / preds[0].size(0)) * 100.0 for x in multitask_topks_correct(preds, labels, ks)]


def task_topk_accuracies(outputs: Outputs, labels: Labels, ks: Sequence[int]) -> Dict[str, torch.Tensor]:
    """Named top-k accuracies (percent, 0-d tensors) of single- or multi-task outputs.

    Plain labels: `top1_acc`, `top5_acc`, ... Dict labels: `<task>_top{k}_acc` per task and, when
    there are several tasks, `action_top{k}_acc` (every task right, EPIC's action accuracy).
    """
    pairs = task_pairs(outputs, labels)
    stats = {}
    for task, (preds, target) in pairs.items():
        prefix = "" if task == SINGLE_TASK else f"{task}_"
        for k, acc in zip(ks, topk_accuracies(preds, target, ks)):
            stats[f"{prefix}top{k}_acc"] = acc
    if len(pairs) > 1:
        preds, targets = zip(*pairs.values())
        for k, acc in zip(ks, multitask_topk_accuracies(preds, targets, ks)):
            stats[f"{JOINT_TASK}_top{k}_acc"] = acc
    return stats


def task_topk_errors(outputs: Outputs, labels: Labels, ks: Sequence[int]) -> Dict[str, torch.Tensor]:
    """`task_topk_accuracies` as errors: the same names with `_err` for `_acc`, 100 - accuracy."""
    return {name[: -len("acc")] + "err": 100.0 - acc for name, acc in task_topk_accuracies(outputs, labels, ks).items()}


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """sklearn's average precision of one class: scores [N], binary labels [N] (at least one positive)."""
    return float(average_precision_score(labels, scores))


def mean_average_precision(preds: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of sklearn's average precision (PySlowFast's `get_map`).

    preds: [N, C] scores; labels: [N, C] multi-hot. Classes with no positive label are left out.
    """
    present = ~np.all(labels == 0, axis=0)
    if not present.any():
        raise ValueError("mean_average_precision: no class has a positive label")
    return float(np.mean(average_precision_score(labels[:, present], preds[:, present], average=None)))
