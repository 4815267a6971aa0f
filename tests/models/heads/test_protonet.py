import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import BackboneOutput, build_head


def _head(metric, scale=10.0):
    cfg = get_cfg()
    cfg.HEAD.NAME = "ProtoNet"
    cfg.HEAD.METRIC = metric
    cfg.HEAD.INIT_SCALE = scale
    return build_head(cfg, in_dim=4)


def test_cosine_averages_over_shots_with_reference_eps():
    # Two classes, support unsorted: labels [1, 0, 1]; frames averaged first.
    support = torch.tensor([[[1.0, 0.0], [1.0, 0.0]],
                            [[0.0, 2.0], [0.0, 2.0]],
                            [[3.0, 4.0], [3.0, 4.0]]])
    labels = torch.tensor([1, 0, 1])
    query = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    out = _head("cosine", scale=2.0)(support, labels, query, 2)["logits"]
    cos_to_0 = 0.0
    cos_to_1 = (1.0 / (1.0 + 0.01) + 3.0 / (5.0 + 0.01)) / 2
    assert torch.allclose(out, 2.0 * torch.tensor([[cos_to_0, cos_to_1]]))


def test_euclidean_is_negative_squared_distance_to_class_mean():
    support = torch.tensor([[1.0, 1.0], [3.0, 1.0], [0.0, 0.0]]).unsqueeze(1)  # T = 1
    labels = torch.tensor([0, 0, 1])
    query = torch.tensor([[2.0, 2.0]]).unsqueeze(1)
    out = _head("euclidean")(support, labels, query, 2)["logits"]
    assert torch.allclose(out, torch.tensor([[-1.0, -8.0]]))
    assert len(list(_head("euclidean").parameters())) == 0


def test_accepts_backbone_output_and_uses_frames(episode):
    s, s_lab, q, _ = episode(3, 2, 2, 4, 8)
    head = _head("cosine")
    wrap = lambda x: BackboneOutput(pooled=torch.zeros(len(x), 8), frames=x)  # noqa: E731
    assert torch.allclose(head(wrap(s), s_lab, wrap(q), 3)["logits"], head(s, s_lab, q, 3)["logits"])


def test_classifies_clean_episode(episode):
    s, s_lab, q, q_lab = episode(5, 3, 2, 4, 16, noise=0.1)
    for metric in ("cosine", "euclidean"):
        with torch.no_grad():
            logits = _head(metric)(s, s_lab, q, 5)["logits"]
        assert logits.shape == (10, 5)
        assert (logits.argmax(1) == q_lab).all()


def test_bad_metric_and_labels_are_reported():
    with pytest.raises(ValueError, match="HEAD.METRIC"):
        _head("manhattan")
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="support_labels"):
        _head("cosine")(x, torch.tensor([0, 0]), x, 2)


def test_loss_falls(loss_falls):
    first, last = loss_falls(_head("cosine"), 16)
    assert last < 0.7 * first
    first, last = loss_falls(_head("euclidean"), 16)
    assert last < 0.7 * first
