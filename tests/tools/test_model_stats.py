"""tools/model_stats.py and ego_fsar.models.stats: parameter and FLOP counts."""
import importlib.util
import os

import pytest
import torch.nn.functional as F
from torch import nn

from ego_fsar.config import get_cfg
from ego_fsar.models import build_backbone
from ego_fsar.models.stats import clip_shapes, flops_per_clip
from tests.paths import PYSLOWFAST_CONFIGS, REPO_ROOT

C2_CONFIGS = os.path.join(PYSLOWFAST_CONFIGS, "Kinetics", "c2")


def load_tool():
    spec = importlib.util.spec_from_file_location("model_stats", os.path.join(REPO_ROOT, "tools", "model_stats.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_vit_cfg(depth):
    cfg = get_cfg()
    cfg.MODEL.ARCH = "vit"
    cfg.DATA.INPUT_CHANNEL_NUM, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE = [3], 4, 32
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS = 32, depth, 4
    return cfg


class _Attention(nn.Module):
    def forward(self, inputs):
        x = inputs[0].flatten(3)  # [1, C, T, H*W]: C heads, T queries/keys, H*W channels
        return F.scaled_dot_product_attention(x, x, x)


def test_attention_flops_are_counted():
    c, t, h, w = 2, 5, 3, 4
    assert flops_per_clip(_Attention(), [(c, t, h, w)]) * 1e9 == c * t * t * (h * w + h * w)


def test_vit_block_flops_formula():
    """One block on N tokens of width D: qkv, attention (2 N^2 D), proj, MLP, two LayerNorms (5 N D)."""
    flops = [flops_per_clip(build_backbone(tiny_vit_cfg(d), "VideoViT"), [(3, 4, 32, 32)]) * 1e9 for d in (1, 2)]
    n, d = 2 * 2 * 2, 32
    assert flops[1] - flops[0] == n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * 4 * d + 2 * 5 * n * d


def test_clip_shapes_follow_pathways():
    cfg = get_cfg()
    cfg.DATA.NUM_FRAMES, cfg.SLOWFAST.ALPHA, cfg.DATA.TRAIN_CROP_SIZE = 32, 4, 224
    assert clip_shapes(cfg) == [(3, 8, 224, 224), (3, 32, 224, 224)]
    cfg.MODEL.ARCH, cfg.DATA.INPUT_CHANNEL_NUM = "vit", [21]
    assert clip_shapes(cfg, crop_size=56) == [(21, 32, 56, 56)]


VIT_S = """MODEL: {MODEL_NAME: VideoMAE, ARCH: vit, NUM_CLASSES: 400}
DATA: {INPUT_CHANNEL_NUM: [3]}
VIT: {EMBED_DIM: 384, DEPTH: 12, NUM_HEADS: 6}
"""
TAMT = """_BASE_: VIT_S.yaml
MODEL: {NUM_CLASSES: 64, TRAINABLE: ['\\.tam\\.', '^fc_norm\\.', '^head\\.']}
VIT: {ADAPTER_LAYERS: 2}
"""


def taa_params(dim):
    """TAMT adapter: Conv1d(C, C/4, 3) + BN(C/4) + 2 x Conv1d(C/4, C, 1), no biases."""
    return dim * (dim // 4) * 3 + 2 * (dim // 4) + 2 * (dim // 4) * dim


def vit_params(dim, classes, adapters=0):
    """VideoMAE ViT-{S,B}/16 (12 blocks, tubelet 2, MLP ratio 4) plus TAMT adapters."""
    block = 12 * dim * dim + 12 * dim
    return 3 * 2 * 16 * 16 * dim + dim + 12 * block + 2 * dim + dim * classes + classes + adapters * taa_params(dim)


def test_table_for_slowfast_vit_and_tamt(tmp_path, capsys):
    """SlowFast R50, ViT-S and TAMT rows at a tiny clip size (ViT-B and R101 counts are checked in
    test_vit.py and test_slowfast.py; the tool handles them alike, only slower)."""
    (tmp_path / "VIT_S.yaml").write_text(VIT_S)
    (tmp_path / "TAMT.yaml").write_text(TAMT)
    configs = [os.path.join(C2_CONFIGS, "SLOWFAST_8x8_R50.yaml"), str(tmp_path / "VIT_S.yaml"), str(tmp_path / "TAMT.yaml")]
    load_tool().main(["--cfg", *configs, "DATA.TRAIN_CROP_SIZE", "32", "DATA.NUM_FRAMES", "8"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:5] == ["config", "model", "params", "trainable", "GFLOPs"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == ["SLOWFAST_8x8_R50.yaml", "VIT_S.yaml", "TAMT.yaml"]
    count = {name: int(row[2].replace(",", "")) for name, row in rows.items()}
    trainable = {name: int(row[3].replace(",", "")) for name, row in rows.items()}
    assert count["SLOWFAST_8x8_R50.yaml"] == trainable["SLOWFAST_8x8_R50.yaml"] == 34_566_488  # PySlowFast
    assert count["VIT_S.yaml"] == vit_params(384, 400)
    assert count["TAMT.yaml"] == vit_params(384, 64, adapters=2)
    assert trainable["TAMT.yaml"] == 2 * taa_params(384) + 2 * 384 + 384 * 64 + 64  # adapters, fc_norm, head
    assert rows["VIT_S.yaml"][1] == "VideoMAE/VideoViT"
    assert rows["SLOWFAST_8x8_R50.yaml"][-3:] == ["3x2x32x32", "+", "3x8x32x32"]
    assert all(float(row[4]) > 0 for row in rows.values())


def test_tool_needs_a_config():
    with pytest.raises(SystemExit, match="at least one config"):
        load_tool().main([])
