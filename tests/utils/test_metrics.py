import numpy as np
import pytest
import torch

from ego_fsar.utils import metrics

# Rows rank the classes 0 > 1 > 2 > 3, 3 > 2 > 1 > 0, 1 > 0 > 3 > 2.
PREDS = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.3, 0.4, 0.1, 0.2]])
LABELS = torch.tensor([0, 1, 2])


def test_topks_correct_errors_accuracies():
    assert [float(x) for x in metrics.topks_correct(PREDS, LABELS, (1, 2, 3))] == [1.0, 1.0, 2.0]
    assert [float(x) for x in metrics.topk_errors(PREDS, LABELS, (1, 3))] == pytest.approx([200 / 3, 100 / 3])
    assert [float(x) for x in metrics.topk_accuracies(PREDS, LABELS, (1, 3))] == pytest.approx([100 / 3, 200 / 3])


def test_k_beyond_the_number_of_classes_counts_every_sample():
    assert [float(x) for x in metrics.topk_accuracies(PREDS, LABELS, (4, 5))] == [100.0, 100.0]


def test_batch_mismatch():
    with pytest.raises(ValueError, match="batch sizes"):
        metrics.topks_correct(PREDS, LABELS[:2], (1,))


def test_multitask_action_needs_every_task_right():
    verb = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    noun = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    verb_y, noun_y = torch.tensor([0, 0, 0]), torch.tensor([0, 0, 2])
    assert [float(x) for x in metrics.multitask_topks_correct((verb, noun), (verb_y, noun_y), (1, 2))] == [1.0, 3.0]
    stats = metrics.task_topk_accuracies({"verb": verb, "noun": noun}, {"verb": verb_y, "noun": noun_y}, (1,))
    assert {k: float(v) for k, v in stats.items()} == pytest.approx(
        {"verb_top1_acc": 200 / 3, "noun_top1_acc": 200 / 3, "action_top1_acc": 100 / 3})


def test_task_topk_errors_names():
    errs = metrics.task_topk_errors({"logits": PREDS}, LABELS, (1, 3))
    assert {k: float(v) for k, v in errs.items()} == pytest.approx({"top1_err": 200 / 3, "top3_err": 100 / 3})


def test_task_pairs_errors():
    with pytest.raises(KeyError, match="noun"):
        metrics.task_pairs({"verb": PREDS}, {"verb": LABELS, "noun": LABELS})
    with pytest.raises(KeyError, match="logits"):
        metrics.task_pairs({"verb": PREDS}, LABELS)
    with pytest.raises(TypeError):
        metrics.task_pairs(PREDS, {"verb": LABELS})


def test_mean_average_precision_skips_classes_without_positives():
    preds = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5], [0.6, 0.3, 0.5]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    # Positives outrank negatives in classes 0 and 1 (AP 1); class 2 has no positive and is left out.
    assert metrics.mean_average_precision(preds, labels) == pytest.approx(1.0)
    labels = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0]])
    # class 0: its positive (0.1) ranks last of 3 -> AP 1/3; class 1: scores 0.2, 0.3 over 0.8 -> AP (1/2 + 2/3) / 2.
    assert metrics.mean_average_precision(preds, labels) == pytest.approx((1 / 3 + (1 / 2 + 2 / 3) / 2) / 2)
