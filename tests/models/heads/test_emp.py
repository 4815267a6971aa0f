import zlib

import pytest
import torch
import torch.nn.functional as F

from ego_fsar.config import get_cfg
from ego_fsar.models import BackboneOutput, build_head

C, T, S = 16, 4, 4
NAMES = ["open door", "close door", "pour water", "cut bread", "wash cup"]


class FakeTextEncoder:
    """Deterministic stand-in for MiniLM: one fixed random unit vector per (template, name)."""

    dim = 384

    def __init__(self):
        self.calls = []

    def encode(self, names, template):
        self.calls.append((template, list(names)))
        seeds = [zlib.crc32(f"{template}|{n}".encode()) for n in names]
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return F.normalize(torch.stack(rows), dim=-1)


def _head(**head_keys):
    cfg = get_cfg()
    cfg.HEAD.NAME = "EMPNet"
    cfg.HEAD.OTAM_LAMBDA = 0.5
    cfg.TEXT.TEMPLATES = ["a video of {}", "{}, an action"]
    for k, v in head_keys.items():
        setattr(cfg.HEAD, k, v)
    head = build_head(cfg, in_dim=C)
    head.text_encoder = FakeTextEncoder()
    return head


def _tokens(x, cls_token=False):
    """Frame features [N, T, C] -> BackboneOutput with three fake hidden maps [N, T, S(+1), C]."""
    scale = torch.linspace(0.5, 1.5, S + int(cls_token)).view(1, 1, -1, 1)
    hidden = [x.unsqueeze(2) * scale * (i + 1) for i in range(3)]
    return BackboneOutput(pooled=x.mean(1), frames=x, hidden=hidden)


def test_output_shapes_probabilities_and_losses(episode):
    s, s_lab, q, q_lab = episode(3, 2, 2, T, C)
    head = _head().eval()
    with torch.no_grad():
        out = head(_tokens(s), s_lab, _tokens(q), 3, class_text=NAMES[:3])
        train = head(_tokens(s), s_lab, _tokens(q), 3, class_text=NAMES[:3], query_labels=q_lab)
    assert out["logits"].shape == (6, 3)
    for level in ("patch", "frame", "token"):
        assert out[f"prob_{level}"].shape == (6, 3)
        assert out[f"prob_{level}_text"].shape == (12, 3)  # support rows, then query rows
        assert f"loss_{level}" not in out and f"loss_{level}_text" in out
        assert f"loss_{level}" in train
    maps = [out[f"prob_{lv}"] for lv in ("patch", "frame", "token")]
    maps += [out[f"prob_{lv}_text"][6:] for lv in ("patch", "frame", "token")]
    assert torch.allclose(out["logits"].exp(), torch.stack(maps).mean(0), atol=1e-6)
    assert torch.allclose(out["logits"].exp().sum(1), torch.ones(6), atol=1e-5)


def test_five_shot_text_mapping_follows_labels_not_support_order(episode):
    # 5-way 5-shot ordered so the first five supports are all class 0: the reference would give
    # classes 1-4 the text of class 0.
    s, s_lab, q, _ = episode(5, 5, 1, T, C)
    order = s_lab.argsort(stable=True)
    s, s_lab = s[order], s_lab[order]
    head = _head().eval()
    with torch.no_grad():
        text = head.class_text_features(NAMES, torch.device("cpu"))
        emb = torch.stack([head.text_encoder.encode(NAMES, t) for t in head.templates]).mean(0)
        expected = head.text_proj(emb)
        assert torch.allclose(text, expected)
        out = head(_tokens(s), s_lab, _tokens(q), 5, class_text=NAMES)
        # Renaming classes by a permutation permutes the columns: class c keeps its own text.
        perm = torch.tensor([3, 0, 4, 1, 2])
        names_p = [None] * 5
        for c in range(5):
            names_p[int(perm[c])] = NAMES[c]
        out_p = head(_tokens(s), perm[s_lab], _tokens(q), 5, class_text=names_p)
    for key in ("logits", "prob_token_text", "prob_patch", "prob_frame"):
        assert torch.allclose(out_p[key][:, perm], out[key], atol=1e-5), key


def test_cross_modal_maps_follow_the_class_names(episode):
    s, s_lab, q, _ = episode(3, 1, 1, T, C)
    head = _head().eval()
    with torch.no_grad():
        a = head(_tokens(s), s_lab, _tokens(q), 3, class_text=NAMES[:3])
        b = head(_tokens(s), s_lab, _tokens(q), 3, class_text=[NAMES[1], NAMES[0], NAMES[2]])
    assert not torch.allclose(a["prob_token_text"], b["prob_token_text"])


def test_templates_sampled_in_training_averaged_in_eval(episode):
    s, s_lab, q, _ = episode(3, 1, 1, T, C)
    head = _head().train()
    head(_tokens(s), s_lab, _tokens(q), 3, class_text=NAMES[:3])
    assert len(head.text_encoder.calls) == 1
    head.eval()
    head.text_encoder.calls.clear()
    with torch.no_grad():
        head(_tokens(s), s_lab, _tokens(q), 3, class_text=NAMES[:3])
    assert [c[0] for c in head.text_encoder.calls] == head.templates


@pytest.mark.parametrize("ce_on_probs", [False, True])
def test_level_losses_fixed_and_reference(episode, ce_on_probs):
    s, s_lab, q, q_lab = episode(3, 2, 2, T, C)
    head = _head(EMP_CE_ON_PROBS=ce_on_probs).eval()
    with torch.no_grad():
        out = head(_tokens(s), s_lab, _tokens(q), 3, class_text=NAMES[:3], query_labels=q_lab)
    for level in ("patch", "frame", "token"):
        p = out[f"prob_{level}"]
        expected = F.cross_entropy(p, q_lab) if ce_on_probs else F.nll_loss(p.log(), q_lab)
        assert torch.isclose(out[f"loss_{level}"], expected, atol=1e-5)
        p_text = out[f"prob_{level}_text"]
        all_labels = torch.cat([s_lab, q_lab])
        if ce_on_probs:
            expected = F.cross_entropy(p_text, all_labels)
        else:
            expected = F.nll_loss(p_text.log(), all_labels)
        assert torch.isclose(out[f"loss_{level}_text"], expected, atol=1e-5)


def test_class_token_maps_and_hidden_widths(episode):
    s, s_lab, q, _ = episode(3, 1, 1, T, C)
    head = _head(EMP_CLS_TOKEN=True).eval()
    with torch.no_grad():
        out = head(_tokens(s, cls_token=True), s_lab, _tokens(q, cls_token=True), 3, class_text=NAMES[:3])
    assert out["logits"].shape == (3, 3)
    head = _head(EMP_HIDDEN_DIMS=[8, 16, 24]).eval()

    def wide(x):
        return BackboneOutput(x.mean(1), x, [torch.randn(len(x), T, S, w) for w in (8, 16, 24)])

    with torch.no_grad():
        assert head(wide(s), s_lab, wide(q), 3, class_text=NAMES[:3])["logits"].shape == (3, 3)


def test_bad_inputs_are_reported(episode):
    s, s_lab, q, _ = episode(3, 1, 1, T, C)
    head = _head()
    with pytest.raises(ValueError, match="class_text"):
        head(_tokens(s), s_lab, _tokens(q), 3)
    with pytest.raises(ValueError, match="hidden token maps"):
        head(s, s_lab, q, 3, class_text=NAMES[:3])
    with pytest.raises(ValueError, match="HEAD.EMP_HIDDEN_DIMS"):
        _head(EMP_HIDDEN_DIMS=[16, 16])


def test_loss_falls(loss_falls):
    q_lab = torch.arange(3).repeat_interleave(2)
    first, last = loss_falls(_head(), C, t=T, to_input=_tokens, class_text=NAMES[:3],
                             query_labels=q_lab)
    assert last < 0.8 * first
