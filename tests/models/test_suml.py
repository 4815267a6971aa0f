"""The SUM-L model: checkpoint names, the ego-only test model, alignment losses."""
import logging

import pytest
import torch
import torch.nn.functional as F

from ego_fsar.config import get_cfg
from ego_fsar.models import build_model
from ego_fsar.utils import checkpoint as cu


def suml_cfg(train: bool = True):
    """A SUML of two R18 SlowFasts of width 4 on 8-frame clips, EPIC-style verb/noun heads [3, 5]."""
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH = "SUML", "slowfast"
    cfg.MODEL.NUM_CLASSES = [3, 5]
    cfg.DATA.INPUT_CHANNEL_NUM = [3, 3]
    cfg.RESNET.DEPTH, cfg.RESNET.WIDTH_PER_GROUP = 18, 4
    cfg.RESNET.NUM_BLOCK_TEMP_KERNEL = [[2], [2], [2], [2]]
    cfg.SLOWFAST.ALPHA, cfg.SLOWFAST.BETA_INV = 4, 4
    cfg.SUML.EXO_NUM_CLASSES = [2, 4]
    cfg.TRAIN.ENABLE = train
    return cfg


def _clips(batch=4, size=32):
    torch.manual_seed(0)
    fast = torch.randn(batch, 3, 8, size, size)
    return [fast[:, :, ::4].clone(), fast]


def test_state_dict_names_pyslowfast_ego_and_suffixed_exo():
    keys = set(build_model(suml_cfg()).state_dict())
    assert {"s1.pathway0_stem.conv.weight", "headepic100.projections.0.weight", "headepic100.projections.1.weight",
            "s1_t.pathway0_stem.conv.weight", "s1_fuse_t.conv_f2s.weight", "s5_t.pathway1_res1.branch2.c.weight",
            "head_lemma.projections.0.weight", "head_lemma.projections.1.weight",
            "global_con_head.fpv_global_proj.weight", "global_con_head.tpv_global_proj.weight"} <= keys
    assert not any(k.startswith(("backbone.", "exo_backbone.", "head.")) for k in keys)
    ego_only = set(build_model(suml_cfg(train=False)).state_dict())
    assert ego_only == {k for k in keys if not k.split(".")[0].endswith("_t")
                        and not k.startswith(("head_lemma.", "global_con_head."))}


def test_single_class_count_keeps_the_pyslowfast_head():
    cfg = suml_cfg(train=False)
    cfg.MODEL.NUM_CLASSES = 7
    model = build_model(cfg)
    assert {"head.projection.weight", "head.projection.bias"} <= set(model.state_dict())
    assert model(_clips(batch=2))["logits"].shape == (2, 7)


def test_two_backbone_checkpoint_loads_into_ego_only_model(tmp_path, caplog):
    trained = build_model(suml_cfg())
    path = str(tmp_path / "suml.pyth")
    torch.save({"model_state": trained.state_dict(), "epoch": 3}, path)
    ego_only = build_model(suml_cfg(train=False))
    exo_keys = [k for k in trained.state_dict() if k not in ego_only.state_dict()]
    with caplog.at_level(logging.INFO):
        cu.load_checkpoint(path, ego_only, strict=True)
    text = caplog.text
    assert "0 missing" in text and f"{len(exo_keys)} unexpected" in text
    assert text.count(f"{len(exo_keys)} unexpected keys") == 1  # reported once, with a few names
    assert "global_con_head.fpv_global_proj.bias" in text and "missing keys" not in text
    for key, value in ego_only.state_dict().items():
        assert torch.equal(value, trained.state_dict()[key]), key
    # The ego-only model scores clips with the trained ego weights.
    trained.eval(), ego_only.eval()
    with torch.no_grad():
        assert torch.allclose(trained(_clips())["verb"], ego_only(_clips())["verb"])


def _exo_batch(cfg, text_ego, text_exo):
    return dict(exo_inputs=_clips(), exo_label=torch.eye(6)[:4],
                text_embedding=text_ego, exo_text_embedding=text_exo)


def test_training_forward_gives_the_alignment_losses():
    cfg = suml_cfg()
    model = build_model(cfg).train()
    assert model.BATCH_INPUTS == ("exo_inputs", "exo_label", "text_embedding", "exo_text_embedding")
    text = F.normalize(torch.randn(4, 384), dim=1)
    out = model(_clips(), **_exo_batch(cfg, text, text))  # identical narrations: every pair is kept
    assert out["verb"].shape == (4, 3) and out["noun"].shape == (4, 5) and out["exo_logits"].shape == (4, 6)
    for name in ("loss_exo", "loss_align_ego", "loss_align_exo", "loss_cross_view"):
        assert out[name].dim() == 0 and torch.isfinite(out[name]), name
    assert out["loss_cross_view"].item() > 0
    logits, target = out["exo_logits"].detach(), torch.eye(6)[:4]  # the release: BCE(verbs) + BCE(nouns)
    expected = (F.binary_cross_entropy_with_logits(logits[:, :2], target[:, :2])
                + F.binary_cross_entropy_with_logits(logits[:, 2:], target[:, 2:]))
    assert out["loss_exo"].item() == pytest.approx(expected.item(), rel=1e-5)
    sum(out[k] for k in out if k.startswith("loss_")).backward()
    assert model.s1_t.pathway0_stem.conv.weight.grad.abs().sum() > 0
    assert model.backbone.s1.pathway0_stem.conv.weight.grad.abs().sum() > 0
    model.eval()
    assert model.BATCH_INPUTS == ()


def test_cross_view_term_needs_two_pairs_above_threshold_and_can_be_off():
    cfg = suml_cfg()
    model = build_model(cfg)
    z = F.normalize(torch.randn(4, 384), dim=1)
    t_ego = torch.eye(384)[:4]
    t_exo = torch.eye(384)[:4].clone()
    t_exo[1:] = torch.eye(384)[10:13]  # only pair 0 has cosine 1 > 0.5, the rest 0
    losses = model.alignment_losses(z, z.flip(0), t_ego, t_exo)
    assert float(losses["loss_cross_view"]) == 0.0
    t_exo[1] = t_ego[1]  # two pairs pass: the term is DCL both ways on rows 0 and 1
    losses = model.alignment_losses(z, z.flip(0), t_ego, t_exo)
    from ego_fsar.models.losses import decoupled_contrastive_loss as dcl
    a, b = z[:2], z.flip(0)[:2]
    expected = dcl(a, b, cfg.MODEL.TEMP) + dcl(b, a, cfg.MODEL.TEMP)
    assert float(losses["loss_cross_view"]) == pytest.approx(float(expected), rel=1e-5)
    cfg.SUML.CROSS_VIEW_LOSS = False
    assert "loss_cross_view" not in build_model(cfg).alignment_losses(z, z, t_ego, t_ego)


def test_exo_class_counts_must_be_verbs_and_nouns():
    cfg = suml_cfg()
    cfg.SUML.EXO_NUM_CLASSES = 6  # the old single width
    with pytest.raises(ValueError, match=r"SUML.EXO_NUM_CLASSES must be \[exo verb classes, exo noun classes\], got 6"):
        build_model(cfg)
