import math

import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import build_head
from ego_fsar.models.heads.fewshot_utils import otam_cumulative_distance, otam_distance

EPS_DIST = 1 - 1 / 1.01  # 1 − cos of identical frames under the reference eps


def _head(lam=0.1):
    cfg = get_cfg()
    cfg.HEAD.NAME = "OTAM"
    cfg.HEAD.OTAM_LAMBDA = lam
    return build_head(cfg, in_dim=4)


def test_recursion_by_hand_2x2():
    d00, d01, d10, d11, lam = 1.0, 2.0, 3.0, 4.0, 0.5

    def softmin(*xs):
        return -lam * math.log(sum(math.exp(-x / lam) for x in xs))

    c1 = d10 + softmin(0.0, d00, 0.0)
    c2 = d11 + softmin(d00, c1)
    expected = softmin(d00 + d01, d00 + d01, c2)
    got = otam_cumulative_distance(torch.tensor([[d00, d01], [d10, d11]]), lam)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    hard = otam_cumulative_distance(torch.tensor([[d00, d01], [d10, d11]]), 1e-4)
    assert math.isclose(hard.item(), min(d00 + d01, d11 + min(d00, d10)), abs_tol=1e-3)


def test_known_alignment_skips_unmatched_query_ends():
    e = torch.eye(5)
    support = e[[0, 1, 2]].unsqueeze(0)           # a b c
    query = e[[3, 0, 1, 2, 4]].unsqueeze(0)       # x a b c y: a-b-c aligns, x and y are skipped
    reversed_support = e[[2, 1, 0]].unsqueeze(0)
    dists = 1 - torch.einsum("qtd,sud->qstu", query, torch.cat([support, reversed_support])) / 1.01
    cost = otam_cumulative_distance(dists, 1e-3)[0]
    assert math.isclose(cost[0].item(), 3 * EPS_DIST, abs_tol=1e-2)
    assert cost[1] > 1.5


def test_order_matters_where_frame_means_do_not():
    e = torch.eye(4)
    forward, backward = e, e.flip(0)
    support = torch.stack([backward, forward, forward + 0.05, backward + 0.05])
    labels = torch.tensor([1, 0, 0, 1])  # unsorted
    query = torch.stack([forward + 0.1, backward - 0.1])
    with torch.no_grad():
        logits = _head()(support, labels, query, 2)["logits"]
    assert logits.argmax(1).tolist() == [0, 1]


def test_logits_are_negative_class_mean_of_symmetric_distance(episode):
    s, s_lab, q, _ = episode(3, 2, 2, 5, 8)
    logits = _head(0.5)(s, s_lab, q, 3)["logits"]
    dist = otam_distance(q, s, 0.5)
    expected = torch.stack([-dist[:, s_lab == c].mean(1) for c in range(3)], dim=1)
    assert logits.shape == (6, 3)
    assert torch.allclose(logits, expected)
    qn, sn = q[0].norm(dim=-1), s[0].norm(dim=-1)
    frame_dist = 1 - (q[0] @ s[0].t()) / (qn[:, None] * sn[None] + 0.01)
    both_ways = otam_cumulative_distance(frame_dist, 0.5) + otam_cumulative_distance(frame_dist.t(), 0.5)
    assert torch.isclose(dist[0, 0], both_ways)


def test_stable_with_long_costs_and_small_lambda():
    dists = torch.full((1, 1, 8, 8), 2.0, requires_grad=True)
    cost = otam_cumulative_distance(dists, 0.01)
    cost.sum().backward()
    assert torch.isfinite(cost).all() and torch.isfinite(dists.grad).all()


def test_loss_falls(loss_falls):
    first, last = loss_falls(_head(), 16)
    assert last < 0.7 * first
