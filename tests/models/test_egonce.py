"""egonce_loss (EgoVLP): InfoNCE when no tags are shared; shared verb+noun adds exactly those positives."""
import pytest
import torch
import torch.nn.functional as F

from ego_fsar.models.losses import egonce_loss

N, V, M, TAU = 5, 6, 7, 0.05


def _sim(seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(N, 8, generator=g), dim=1) @ F.normalize(torch.randn(N, 8, generator=g), dim=1).t()


def _distinct_tags():
    """Clip i has verb i and noun i: no two clips share a tag."""
    return torch.eye(N, V), torch.eye(N, M)


def _infonce(sim):
    target = torch.arange(N)
    return F.cross_entropy(sim / TAU, target) + F.cross_entropy(sim.t() / TAU, target)


def test_equals_infonce_when_tags_are_distinct():
    sim = _sim()
    assert egonce_loss(sim, *_distinct_tags(), temperature=TAU).item() == pytest.approx(_infonce(sim).item(), rel=1e-6)


def test_shared_verb_and_noun_changes_exactly_those_pairs():
    sim = _sim(1)
    verbs, nouns = _distinct_tags()
    verbs[3, 0] = nouns[3, 0] = 1  # clip 3 now also has clip 0's verb and noun
    p_rows, p_cols = (sim / TAU).softmax(1), (sim / TAU).softmax(0)
    change = 0.0
    for i, j in ((0, 3), (3, 0)):  # each term gains its one new positive, in both directions
        change += -torch.log(p_rows[i, i] + p_rows[i, j]) + torch.log(p_rows[i, i])
        change += -torch.log(p_cols[i, i] + p_cols[j, i]) + torch.log(p_cols[i, i])
    expected = _infonce(sim) + change / N
    assert egonce_loss(sim, verbs, nouns, temperature=TAU).item() == pytest.approx(expected.item(), rel=1e-5)
    assert egonce_loss(sim, verbs, nouns, temperature=TAU).item() < _infonce(sim).item()


def test_shared_verb_alone_is_no_positive_unless_nouns_are_dropped():
    sim = _sim(2)
    verbs, nouns = _distinct_tags()
    verbs[3, 0] = 1  # a shared verb, no shared noun
    assert egonce_loss(sim, verbs, nouns, TAU).item() == pytest.approx(_infonce(sim).item(), rel=1e-6)
    assert egonce_loss(sim, verbs, nouns, TAU, noun=False).item() < _infonce(sim).item() - 1e-4
    both_off = egonce_loss(sim, verbs, nouns, TAU, verb=False, noun=False)
    assert both_off.item() == pytest.approx(_infonce(sim).item(), rel=1e-6)


def test_clips_without_verbs_have_no_verb_positive():
    sim = _sim(3)
    verbs, nouns = torch.zeros(N, V), torch.eye(N, M)
    nouns[1, 0] = 1  # clips 0 and 1 share a noun; no clip has a verb
    assert egonce_loss(sim, verbs, nouns, TAU).item() == pytest.approx(_infonce(sim).item(), rel=1e-6)
    assert egonce_loss(sim, verbs, nouns, TAU, verb=False).item() < _infonce(sim).item() - 1e-4


def test_gradient_flows_and_shape_is_checked():
    sim = _sim(4).requires_grad_()
    loss = egonce_loss(sim, *_distinct_tags())
    assert loss.dim() == 0
    loss.backward()
    assert torch.isfinite(sim.grad).all() and sim.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="sim"):
        egonce_loss(torch.zeros(3, 4), torch.zeros(3, V), torch.zeros(3, M))
