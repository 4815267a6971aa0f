"""`PARAMETER_FREE`, declared by every few-shot head: true exactly for the heads whose predictions no
training changes (ProtoNet, OTAM, LogReg), which the episodic test may run on any backbone."""
import inspect

import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import build_head
from ego_fsar.models.build import HEAD_REGISTRY

FEWSHOT_HEADS = sorted(name for name, cls in HEAD_REGISTRY
                       if "support_labels" in inspect.signature(cls.forward).parameters)
PARAMETER_FREE = ["LogReg", "OTAM", "ProtoNet"]


def test_every_fewshot_head_declares_it():
    assert FEWSHOT_HEADS == ["EMPNet", "LogReg", "OTAM", "ProtoNet", "TAMT", "TRX", "TextZeroShot"]
    assert all("PARAMETER_FREE" in vars(HEAD_REGISTRY.get(name)) for name in FEWSHOT_HEADS)
    assert [name for name in FEWSHOT_HEADS if HEAD_REGISTRY.get(name).PARAMETER_FREE] == PARAMETER_FREE


@pytest.mark.parametrize("name", ["TRX", "TAMT", "EMPNet"])
def test_heads_that_need_training_have_trainable_parameters(name):
    cfg = get_cfg()
    cfg.HEAD.TRX_DIM, cfg.HEAD.TAMT_REDUCE_DIMS = 8, [8, 4]
    assert sum(p.numel() for p in build_head(cfg, name, in_dim=16).parameters() if p.requires_grad) > 0


@pytest.mark.parametrize("name", ["OTAM", "LogReg"])
def test_heads_without_parameters(name):
    assert list(build_head(get_cfg(), name, in_dim=16).parameters()) == []


def test_protonet_scale_never_changes_a_prediction(episode):
    """ProtoNet's cosine scale is learnable, but any positive value gives the same arg-max."""
    support, labels, query, _ = episode(5, 2, 3, 4, 16)
    predictions = []
    for scale in (0.01, 1.0, 10.0, 300.0):
        cfg = get_cfg()
        cfg.HEAD.METRIC, cfg.HEAD.INIT_SCALE = "cosine", scale
        predictions.append(build_head(cfg, "ProtoNet", in_dim=16)(support, labels, query, 5)["logits"].argmax(1))
    assert all(torch.equal(p, predictions[0]) for p in predictions)
