"""SUM-L's decoupled contrastive loss and Ego-Exo's distillation loss against direct computations."""
import math

import pytest
import torch
import torch.nn.functional as F

from ego_fsar.models.losses import decoupled_contrastive_loss, distillation_kl


def _dcl_direct(z1, z2, tau, weights=None):
    """Row by row: -w_i s(z1_i, z2_i)/tau + log(sum_{j != i} e^{s(z1_i, z1_j)/tau} + e^{s(z1_i, z2_j)/tau})."""
    n = z1.shape[0]
    total = 0.0
    for i in range(n):
        positive = float(z1[i] @ z2[i]) / tau
        negatives = sum(math.exp(float(z1[i] @ z1[j]) / tau) + math.exp(float(z1[i] @ z2[j]) / tau)
                        for j in range(n) if j != i)
        total += -(1.0 if weights is None else float(weights[i])) * positive + math.log(negatives)
    return total / n


def _batch(n=4, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1),
            F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1))


@pytest.mark.parametrize("tau", [0.06, 0.5])
def test_dcl_matches_direct_computation(tau):
    z1, z2 = _batch()
    loss = decoupled_contrastive_loss(z1, z2, tau)
    assert loss.dim() == 0
    assert float(loss) == pytest.approx(_dcl_direct(z1, z2, tau), rel=1e-9)
    # One direction: swapping the arguments gives another value.
    assert float(decoupled_contrastive_loss(z2, z1, tau)) == pytest.approx(_dcl_direct(z2, z1, tau), rel=1e-9)
    assert float(decoupled_contrastive_loss(z2, z1, tau)) != pytest.approx(float(loss))


def test_dcl_weight_fn_multiplies_the_positive_term_only():
    z1, z2 = _batch(seed=1)
    weights = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    loss = decoupled_contrastive_loss(z1, z2, 0.1, weight_fn=lambda a, b: weights)
    assert float(loss) == pytest.approx(_dcl_direct(z1, z2, 0.1, weights), rel=1e-9)


def test_dcl_gradients_are_finite():
    z1, z2 = (z.float().requires_grad_() for z in _batch())
    decoupled_contrastive_loss(z1, z2, 0.06).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


def test_distillation_kl_on_known_inputs():
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 2.0], [0.0, 1.0]])
    temperature, alpha = 2.0, 0.5
    p = F.softmax(student / temperature, 1)
    q = F.softmax(teacher / temperature, 1)
    kl_rows = (q * (q.log() - p.log())).sum(1)  # KL(q || p) per row, as F.kl_div(log p, q)
    expected = kl_rows.mean() * alpha * temperature ** 2
    assert float(distillation_kl(student, teacher, temperature, alpha)) == pytest.approx(float(expected), rel=1e-6)
    assert float(distillation_kl(teacher, teacher, temperature, alpha)) == pytest.approx(0.0, abs=1e-7)
    assert float(distillation_kl(student[:0], teacher[:0], temperature)) == 0.0
