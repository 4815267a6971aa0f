"""TAMT adapters (TAA) in VideoViT, and the MODEL.FREEZE / MODEL.TRAINABLE policy."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ego_fsar.config import get_cfg
from ego_fsar.models import build_model
from ego_fsar.models.backbones.adapters import TemporalAwareAdapter
from ego_fsar.models.freeze import apply_freeze, freeze_norm_statistics

TAMT_TRAINABLE = [r"\.tam\.", r"^fc_norm\.", r"^head\."]


def tamt_cfg(dim=32, depth=2, heads=4, frames=4, crop=32, adapters=1, classes=5):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.MODEL_NAME = "VideoMAE"
    cfg.MODEL.ARCH = "vit"
    cfg.MODEL.NUM_CLASSES = classes
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM = frames, crop, [3]
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS = dim, depth, heads
    cfg.VIT.ADAPTER_LAYERS = adapters
    return cfg


def taa_param_count(dim):
    """TAMT's TAA without its unused `G` branch: Conv1d(C, C/4, 3) + BN(C/4) + 2 x Conv1d(C/4, C, 1)."""
    hidden = dim // 4
    return dim * hidden * 3 + 2 * hidden + 2 * hidden * dim


@pytest.fixture(scope="module")
def tamt_vit_s():
    """TAMT's ViT-S/16 at 112 px, 16 frames, TAA in the last 2 blocks (meta device, never run)."""
    with torch.device("meta"):
        return build_model(tamt_cfg(dim=384, depth=12, heads=6, frames=16, crop=112, adapters=2, classes=364))


def test_tamt_vit_s_structure(tamt_vit_s):
    state = tamt_vit_s.state_dict()
    adapter_keys = sorted(k for k in state if ".tam." in k)
    assert {k.split(".")[1] for k in adapter_keys} == {"10", "11"}
    assert {k.split(".tam.")[1] for k in adapter_keys} == {
        "L.0.weight", "L.1.weight", "L.1.bias", "L.1.running_mean", "L.1.running_var",
        "L.1.num_batches_tracked", "L2.0.weight", "L3.0.weight"}
    assert state["blocks.10.tam.L.0.weight"].shape == (96, 384, 3)
    adapters = sum(p.numel() for n, p in tamt_vit_s.named_parameters() if ".tam." in n)
    assert adapters == 2 * taa_param_count(384) == 369_024
    assert tamt_vit_s.backbone.pos_grid == (8, 7, 7)


def test_tamt_freezing_counts(tamt_vit_s):
    cfg = tamt_cfg()
    cfg.MODEL.TRAINABLE = TAMT_TRAINABLE
    trainable, total = apply_freeze(tamt_vit_s, cfg)
    assert trainable == 2 * taa_param_count(384) + 2 * 384 + 384 * 364 + 364
    assert total == sum(p.numel() for p in tamt_vit_s.parameters())


def test_adapter_is_tamt_formula():
    torch.manual_seed(0)
    taa = TemporalAwareAdapter(8).eval()
    with torch.no_grad():
        taa.L[1].running_mean.normal_()
        taa.L[1].running_var.uniform_(0.5, 2.0)
    y = torch.randn(2, 3 * 5, 8)  # 3 temporal slots of 5 tokens
    slots = y.view(2, 3, 5, 8)
    context = F.relu(taa.L[1](F.conv1d(slots.mean(2).transpose(1, 2), taa.L[0].weight, padding=1)))
    gamma = torch.sigmoid(F.conv1d(context, taa.L2[0].weight)).transpose(1, 2)[:, :, None]
    beta = F.conv1d(context, taa.L3[0].weight).transpose(1, 2)[:, :, None]
    expected = (slots * gamma + 0.1 * beta).view(2, 15, 8)
    assert torch.allclose(taa(y, 3), expected, atol=1e-6)
    with pytest.raises(ValueError, match="temporal slots"):
        taa(y, 4)


def test_only_adapters_and_head_receive_gradients():
    cfg = tamt_cfg()
    cfg.MODEL.TRAINABLE = TAMT_TRAINABLE
    model = build_model(cfg)
    apply_freeze(model, cfg)
    out = model([torch.randn(2, 3, 4, 32, 32)])
    out["logits"].sum().backward()
    with_grad = {model.flat_name(n) for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all(n.startswith(("head.", "fc_norm.")) or ".tam." in n for n in with_grad)
    assert {n for n in with_grad if ".tam." in n} == {
        "blocks.1.tam.L.0.weight", "blocks.1.tam.L.1.weight", "blocks.1.tam.L.1.bias",
        "blocks.1.tam.L2.0.weight", "blocks.1.tam.L3.0.weight"}
    assert "blocks.0.attn.qkv.weight" not in with_grad


def test_adapters_need_mean_pooling():
    cfg = tamt_cfg()
    cfg.VIT.USE_MEAN_POOLING = False
    with pytest.raises(ValueError, match="VIT.ADAPTER_LAYERS"):
        build_model(cfg)


def test_freeze_with_exceptions_and_logging(caplog):
    cfg = tamt_cfg(adapters=0)
    cfg.MODEL.FREEZE = [r"^blocks\.", r"^patch_embed\."]
    cfg.MODEL.TRAINABLE = [r"^blocks\.1\.norm"]
    model = build_model(cfg)
    with caplog.at_level(logging.INFO, logger="ego_fsar.models.freeze"):
        trainable, total = apply_freeze(model, cfg)
    names = {model.flat_name(n): p.requires_grad for n, p in model.named_parameters()}
    assert names["blocks.1.norm1.weight"] and names["head.weight"] and names["fc_norm.bias"]
    assert not names["blocks.0.attn.qkv.weight"] and not names["patch_embed.proj.weight"]
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if names[model.flat_name(n)])
    assert f"{trainable:,} of {total:,}" in caplog.text


@pytest.mark.parametrize("key,patterns,message", [
    ("FREEZE", [r"^backbone\."], "matches no parameter"),
    ("TRAINABLE", ["(unclosed"], "invalid regex"),
])
def test_freeze_rejects_bad_patterns(key, patterns, message):
    cfg = tamt_cfg()
    setattr(cfg.MODEL, key, patterns)
    with pytest.raises(ValueError, match=f"MODEL.{key}.*{message}"):
        apply_freeze(build_model(cfg), cfg)


def test_frozen_norm_layers_keep_their_statistics():
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Conv3d(4, 4, 1), nn.BatchNorm3d(4))
    for p in model[1].parameters():
        p.requires_grad_(False)
    model.train()
    assert freeze_norm_statistics(model) == 1
    before = model[1].running_mean.clone()
    model(torch.randn(2, 3, 2, 4, 4) + 5)
    assert torch.equal(model[1].running_mean, before) and not model[1].training and model[3].training
