import math

import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import BackboneOutput, build_head
from ego_fsar.models.heads.tamt import covariance_pool, frame_groups, isqrt

S = 5  # spatial positions of the fake token maps


def _head(groups=2, frames=4):
    cfg = get_cfg()
    cfg.HEAD.NAME = "TAMT"
    cfg.HEAD.TAMT_REDUCE_DIMS = [8, 4]
    cfg.HEAD.TAMT_GROUPS = groups
    cfg.HEAD.TAMT_NUM_FRAMES = frames
    return build_head(cfg, in_dim=16)


def _tokens(x):
    """Frame features [N, T, D] -> BackboneOutput whose tokens vary over S positions."""
    scale = torch.linspace(0.5, 1.5, S).view(1, 1, S, 1)
    return BackboneOutput(pooled=x.mean(1), frames=x, hidden=[x.unsqueeze(2) * scale])


def _rotation(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q


def test_isqrt_of_known_spd_matrix():
    q = _rotation(3)
    eig = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    spd = (q @ torch.diag(eig) @ q.t()).unsqueeze(0)
    # Many iterations converge to the true square root Q diag(1, 2, 3) Qᵀ.
    assert torch.allclose(isqrt(spd, 30)[0], q @ torch.diag(eig.sqrt()) @ q.t(), atol=1e-6)
    # Three iterations act on each eigenvalue as the scalar Newton–Schulz recursion.
    tr = eig.sum()
    a = eig / (tr + 1e-5)
    zy = 0.5 * (3 - a)
    y, z = a * zy, zy
    zy = 0.5 * (3 - z * y)
    y, z = y * zy, zy * z
    f = 0.5 * y * (3 - z * y) * math.sqrt(tr)
    assert torch.allclose(isqrt(spd, 3)[0], q @ torch.diag(f) @ q.t(), atol=1e-9)
    assert torch.allclose(isqrt(spd, 1)[0], q @ torch.diag(a * 0.5 * (3 - a) * math.sqrt(tr)) @ q.t())


def test_covariance_pool_is_centred_second_moment():
    x = torch.tensor([[[1.0, 2.0, 3.0, 6.0], [0.0, 1.0, 0.0, 1.0]]])
    cov = covariance_pool(x)
    assert torch.allclose(cov, torch.tensor([[[3.5, 0.5], [0.5, 0.25]]]))


def test_frame_groups_pair_t_with_t_plus_half():
    x = torch.arange(2 * 3 * 8 * 1, dtype=torch.float32).view(2, 3, 8, 1)  # [N, C, T, S]
    g = frame_groups(x, 4)
    assert g.shape == (8, 6, 1)
    # sample 1, group 1 = frames {1, 5}; channels ordered (c, t)
    expected = torch.stack([x[1, c, t, 0] for c in range(3) for t in (1, 5)])
    assert torch.equal(g[1 * 4 + 1, :, 0], expected)


def test_metric_dot_product_for_one_shot_else_euclidean(episode):
    head = _head().eval()
    with torch.no_grad():
        for shot in (1, 3):
            s, s_lab, q, _ = episode(3, shot, 2, 4, 16, seed=shot)
            logits = head(_tokens(s), s_lab, _tokens(q), 3)["logits"]
            z_s, z_q = head.embed(_tokens(s)), head.embed(_tokens(q))
            protos = torch.stack([z_s[s_lab == c].mean(0) for c in range(3)])
            expected = z_q @ protos.t() if shot == 1 else -torch.cdist(z_q, protos) ** 2
            assert logits.shape == (6, 3)
            assert torch.allclose(logits, expected, rtol=1e-4, atol=1e-3)


def test_embedding_is_pooled_plus_covariance_branch():
    head = _head().eval()
    torch.nn.init.zeros_(head.head2.weight)
    torch.nn.init.zeros_(head.head2.bias)
    out = _tokens(torch.randn(3, 4, 16))
    assert torch.allclose(head.embed(out), out.pooled)
    assert head.head2.in_features == 1 * 4 * 4  # cov 4*2 = 8 channels -> stride-2 conv -> 4x4


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="HEAD.TAMT_GROUPS"):
        _head(groups=3)
    x = torch.randn(2, 4, 16)
    with pytest.raises(ValueError, match="hidden"):
        _head()(x, torch.tensor([0, 1]), x, 2)
    with pytest.raises(ValueError, match="HEAD.TAMT_NUM_FRAMES"):
        _head(frames=8)(_tokens(x), torch.tensor([0, 1]), _tokens(x), 2)


def test_loss_falls(loss_falls):
    first, last = loss_falls(_head(), 16, to_input=_tokens)
    assert last < 0.7 * first


@pytest.mark.parametrize("fix", [True, False])
def test_temporal_conv_output_layout(fix):
    cfg = get_cfg()
    cfg.HEAD.NAME = "TAMT"
    cfg.HEAD.TAMT_REDUCE_DIMS = [8, 4]
    cfg.HEAD.TAMT_GROUPS, cfg.HEAD.TAMT_NUM_FRAMES = 2, 4
    cfg.HEAD.TAMT_FIX_CONV_LAYOUT = fix
    head = build_head(cfg, in_dim=16)
    with torch.no_grad():  # identity temporal kernel: the conv returns its input
        head.temporal_conv.weight.copy_(torch.tensor([0.0, 1.0, 0.0]).expand(16, 1, 3))
        head.temporal_conv.bias.zero_()
    seen = []
    head.fc_norm2.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    out = _tokens(torch.randn(2, 4, 16))
    head.embed(out)
    assert torch.allclose(seen[0], 2 * out.hidden[-1]) == fix
