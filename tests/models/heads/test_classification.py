import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import build_head


@pytest.mark.parametrize("name, num_classes", [("ResNetBasicHead", 3), ("ResNetBasicHead", [3, 2]),
                                               ("VideoMAEHead", 3)])
@pytest.mark.parametrize("detach", [False, True])
def test_detach_final_fc_trains_the_projection_only(detach, name, num_classes):
    cfg = get_cfg()
    cfg.MODEL.NUM_CLASSES = num_classes
    cfg.MODEL.DETACH_FINAL_FC = detach
    head = build_head(cfg, name, in_dim=4)
    pooled = torch.randn(2, 4, requires_grad=True)  # stands in for the backbone's output [B, D]
    sum(out.sum() for out in head(pooled).values()).backward()
    assert (pooled.grad is None) == detach
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
