import math

import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import build_head
from ego_fsar.models.heads.trx import PE_SCALE, frame_tuples, sinusoid_encoding


def _head(in_dim=6, dim=16, cards=(2, 3)):
    cfg = get_cfg()
    cfg.HEAD.NAME = "TRX"
    cfg.HEAD.TRX_DIM = dim
    cfg.HEAD.TRX_CARDINALITIES = list(cards)
    return build_head(cfg, in_dim=in_dim)


def test_tuple_counts_for_8_frames():
    pairs, triples = frame_tuples(8, 2), frame_tuples(8, 3)
    assert pairs.shape == (28, 2) and triples.shape == (56, 3)
    assert pairs[0].tolist() == [0, 1] and triples[-1].tolist() == [5, 6, 7]
    assert (pairs[:, 0] < pairs[:, 1]).all()
    head = _head(in_dim=4)
    assert [t.k_linear.in_features for t in head.transformers] == [8, 12]


def test_sinusoid_encoding_values():
    pe = sinusoid_encoding(3, 5, PE_SCALE)
    assert torch.allclose(pe[0], torch.tensor([0.0, 0.1, 0.0, 0.1, 0.0]))
    assert math.isclose(pe[2, 2].item(), 0.1 * math.sin(2 / 10000 ** (2 / 5)), rel_tol=1e-5)
    assert math.isclose(pe[1, 3].item(), 0.1 * math.cos(1 / 10000 ** (2 / 5)), rel_tol=1e-5)


def test_uniform_attention_gives_class_mean_prototype():
    torch.manual_seed(0)
    head = _head(in_dim=4, cards=(2,)).eval()
    tct = head.transformers[0]
    torch.nn.init.zeros_(tct.k_linear.weight)  # equal keys: softmax is uniform over class tuples
    s, q = torch.randn(5, 4, 4), torch.randn(2, 4, 4)
    labels = torch.tensor([1, 0, 1, 1, 0])
    with torch.no_grad():
        logits = head(s, labels, q, 2)["logits"]

        def values(x):
            x = x + sinusoid_encoding(4, 4, PE_SCALE)
            return tct.v_linear(x[:, frame_tuples(4, 2)].flatten(2))  # [N, 6, 16]

        vs, vq = values(s), values(q)
        for c in range(2):
            proto = vs[labels == c].mean((0, 1))
            expected = -(vq - proto).pow(2).sum((1, 2)) / 6
            assert torch.allclose(logits[:, c], expected, rtol=1e-5)


def test_invariant_to_support_order_and_odd_width(episode):
    s, s_lab, q, _ = episode(3, 2, 2, 5, 7)
    head = _head(in_dim=7).eval()
    perm = torch.randperm(len(s), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = head(s, s_lab, q, 3)["logits"]
        b = head(s[perm], s_lab[perm], q, 3)["logits"]
    assert a.shape == (6, 3)
    assert torch.allclose(a, b, atol=1e-5)


def test_bad_config_is_reported():
    with pytest.raises(ValueError, match="HEAD.TRX_CARDINALITIES"):
        _head(cards=())
    x = torch.randn(2, 2, 6)
    with pytest.raises(ValueError, match="HEAD.TRX_CARDINALITIES"):
        _head()(x, torch.tensor([0, 1]), x, 2)


def test_loss_falls(loss_falls):
    first, last = loss_falls(_head(in_dim=16), 16)
    assert last < 0.7 * first
