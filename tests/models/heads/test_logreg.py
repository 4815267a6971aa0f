import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from ego_fsar.config import get_cfg
from ego_fsar.models import BackboneOutput, build_head


def _head(normalize=False):
    cfg = get_cfg()
    cfg.HEAD.NAME = "LogReg"
    cfg.HEAD.LOGREG_NORMALIZE = normalize
    return build_head(cfg, in_dim=8)


def _out(pooled):
    return BackboneOutput(pooled=pooled, frames=pooled.unsqueeze(1))


def test_matches_sklearn_multinomial_fit_on_support(episode):
    s, s_lab, q, _ = episode(3, 2, 2, 1, 8)
    s, q = s[:, 0], q[:, 0]
    logits = _head()(_out(s), s_lab, _out(q), 3)["logits"]
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(s.numpy(), s_lab.numpy())
    assert logits.shape == (6, 3) and logits.dtype == torch.float32
    assert np.allclose(logits.exp().numpy(), clf.predict_proba(q.numpy()), atol=1e-6)
    assert len(list(_head().parameters())) == 0


def test_view_ensemble_averages_probabilities(episode):
    s, s_lab, q, q_lab = episode(4, 3, 3, 1, 16, noise=0.2)
    s, q = s[:, 0], q[:, 0]
    head = _head()
    views = [_out(q), _out(q + 0.3), _out(q * 0.5)]
    probs = [head(_out(s), s_lab, v, 4)["logits"].exp() for v in views]
    ens = head(_out(s), s_lab, views, 4)["logits"]
    assert torch.allclose(ens.exp(), torch.stack(probs).mean(0), atol=1e-6)
    assert (ens.argmax(1) == q_lab).all()


def test_plain_frame_tensors_and_normalisation(episode):
    s, s_lab, q, q_lab = episode(3, 2, 2, 4, 8, noise=0.1)
    out = _head(normalize=True)(s, s_lab, q, 3)["logits"]
    assert torch.allclose(out.exp().sum(1), torch.ones(6), atol=1e-5)
    assert (out.argmax(1) == q_lab).all()


def test_refuses_training_features():
    x = torch.randn(2, 3, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="evaluation head"):
        _head()(x, torch.tensor([0, 1]), x.detach(), 2)
