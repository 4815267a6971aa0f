"""The supervised protocol feeds a model the batch entries it declares (BATCH_INPUTS), and trains on
unlabelled batches through the model's own losses."""
import pytest
import torch
from torch import nn

from ego_fsar.config import get_cfg
from ego_fsar.engine.protocols import SupervisedProtocol
from ego_fsar.models.losses import build_loss


class _PairModel(nn.Module):
    """Scores a clip and returns an alignment loss against a text embedding given in the batch."""

    BATCH_INPUTS = ("text", "extra")

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 2)

    def forward(self, inputs, text, extra):
        assert isinstance(extra, dict) and extra["name"] == ["a", "b"]
        feat = self.proj(inputs[0].mean((2, 3, 4)))
        return {"logits": feat, "loss_align": (feat - text).pow(2).mean()}


def _batch(label=True):
    batch = {"inputs": [torch.randn(2, 3, 1, 2, 2)], "text": torch.zeros(2, 2),
             "extra": {"name": ["a", "b"], "ids": torch.tensor([1, 2])}}
    if label:
        batch["label"] = torch.tensor([0, 1])
    return batch


def test_declared_batch_entries_reach_the_model_and_labels_are_optional():
    cfg = get_cfg()
    cfg.TRAIN.CHANNELS_LAST = False
    model, criterion = _PairModel(), build_loss(cfg)
    outputs, labels, size = SupervisedProtocol.forward(model, _batch(), torch.device("cpu"), cfg)
    assert size == 2 and labels.tolist() == [0, 1]
    assert set(criterion(outputs, labels)[1]) == {"loss_cls", "loss_align"}
    outputs, labels, _ = SupervisedProtocol.forward(model, _batch(label=False), torch.device("cpu"), cfg)
    loss, parts = criterion(outputs, labels)
    assert labels is None and set(parts) == {"loss_align"} and loss.item() == pytest.approx(parts["loss_align"])


def test_a_missing_declared_entry_is_named():
    cfg = get_cfg()
    batch = _batch()
    del batch["text"]
    with pytest.raises(KeyError, match=r"_PairModel reads batch entries \['text'\]"):
        SupervisedProtocol.forward(_PairModel(), batch, torch.device("cpu"), cfg)
