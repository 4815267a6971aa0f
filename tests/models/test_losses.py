import math

import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models.losses import LOSS_REGISTRY, build_loss, is_finite_loss


def _cfg(loss="cross_entropy", smoothing=0.0, weights=()):
    cfg = get_cfg()
    cfg.MODEL.LOSS_FUNC = loss
    cfg.LOSS.LABEL_SMOOTHING = smoothing
    cfg.LOSS.WEIGHTS = [list(w) for w in weights]
    return cfg


def test_registry_holds_pyslowfast_losses():
    assert {"cross_entropy", "bce", "bce_logit", "soft_cross_entropy"} <= {name for name, _ in LOSS_REGISTRY}


def test_cross_entropy_on_uniform_logits_is_log_c():
    loss, parts = build_loss(_cfg())({"logits": torch.zeros(2, 4)}, torch.tensor([0, 3]))
    assert float(loss) == pytest.approx(math.log(4))
    assert parts == {"loss_cls": pytest.approx(math.log(4))}


def test_label_smoothing():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    log_p = torch.log_softmax(logits, 1)[0]
    eps = 0.3
    expected = -((1 - eps) * log_p[0] + eps / 3 * log_p.sum())
    loss, _ = build_loss(_cfg(smoothing=eps))({"logits": logits}, torch.tensor([0]))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_soft_cross_entropy_equals_hard_on_one_hot_targets():
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 4, 0])
    soft, _ = build_loss(_cfg("soft_cross_entropy"))({"logits": logits}, torch.eye(5)[labels])
    hard, _ = build_loss(_cfg())({"logits": logits}, labels)
    assert float(soft) == pytest.approx(float(hard), rel=1e-6)


def test_bce_logit_and_bce_agree():
    logits = torch.tensor([[0.5, -1.0]])
    target = torch.tensor([[1, 0]])
    with_logits, _ = build_loss(_cfg("bce_logit"))({"logits": logits}, target)
    on_probs, _ = build_loss(_cfg("bce"))({"logits": torch.sigmoid(logits)}, target)
    expected = -(math.log(torch.sigmoid(torch.tensor(0.5))) + math.log(1 - torch.sigmoid(torch.tensor(-1.0)))) / 2
    assert float(with_logits) == pytest.approx(expected, rel=1e-5)
    assert float(on_probs) == pytest.approx(expected, rel=1e-5)


def test_bce_rejects_label_smoothing():
    with pytest.raises(ValueError, match="LOSS.LABEL_SMOOTHING"):
        build_loss(_cfg("bce_logit", smoothing=0.1))


def test_dict_labels_sum_over_tasks():
    outputs = {"verb": torch.zeros(2, 4), "noun": torch.zeros(2, 8), "embeddings": torch.ones(2, 3)}
    labels = {"verb": torch.tensor([0, 1]), "noun": torch.tensor([2, 3])}
    loss, parts = build_loss(_cfg())(outputs, labels)
    assert float(loss) == pytest.approx(math.log(4) + math.log(8))
    assert parts["loss_cls_verb"] == pytest.approx(math.log(4))
    assert parts["loss_cls_noun"] == pytest.approx(math.log(8))
    assert parts["loss_cls"] == pytest.approx(math.log(4) + math.log(8))


def test_aux_losses_weighted_by_loss_weights():
    logits = torch.zeros(2, 4, requires_grad=True)
    aux = torch.tensor(2.0, requires_grad=True)
    outputs = {"logits": logits, "loss_distill": aux, "loss_ortho": torch.tensor(1.0)}
    criterion = build_loss(_cfg(weights=[("distill", 0.5), ("cls", 2.0)]))
    loss, parts = criterion(outputs, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(2.0 * math.log(4) + 0.5 * 2.0 + 1.0)
    assert parts == {"loss_cls": pytest.approx(math.log(4)), "loss_distill": 2.0, "loss_ortho": 1.0}
    loss.backward()
    assert float(aux.grad) == 0.5


def test_aux_only_without_labels():
    loss, parts = build_loss(_cfg())({"embeddings": torch.ones(2), "loss_mse": torch.tensor(0.25)}, None)
    assert float(loss) == 0.25 and parts == {"loss_mse": 0.25}


def test_bad_outputs_have_clear_errors():
    criterion = build_loss(_cfg())
    with pytest.raises(KeyError, match="noun"):
        criterion({"verb": torch.zeros(1, 2)}, {"verb": torch.tensor([0]), "noun": torch.tensor([0])})
    with pytest.raises(ValueError, match="scalar"):
        criterion({"logits": torch.zeros(1, 2), "loss_x": torch.ones(3)}, torch.tensor([0]))
    with pytest.raises(ValueError, match="no loss"):
        criterion({"logits": torch.zeros(1, 2)}, None)


def test_loss_computed_in_float32_under_bf16_scores():
    loss, _ = build_loss(_cfg())({"logits": torch.zeros(2, 4, dtype=torch.bfloat16)}, torch.tensor([0, 1]))
    assert loss.dtype == torch.float32


def test_unknown_loss_and_malformed_weights():
    with pytest.raises(KeyError, match=r"MODEL.LOSS_FUNC 'focal'.*cross_entropy"):
        build_loss(_cfg("focal"))
    with pytest.raises(ValueError, match="LOSS.WEIGHTS"):
        build_loss(_cfg(weights=[("distill",)]))


def test_is_finite_loss():
    assert is_finite_loss(torch.tensor(1.5))
    assert not is_finite_loss(torch.tensor(float("nan")))
    assert not is_finite_loss(torch.tensor([1.0, float("inf")]))
