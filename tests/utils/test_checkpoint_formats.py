"""Checkpoint formats: caffe2 names, save-and-reload round trips of every format, inflation,
sub-BN, prefix handling and position-table interpolation."""
import logging
import os
import pickle
import re

import pytest
import torch
import torchvision

from ego_fsar.config import get_cfg
from ego_fsar.config.merge import merge_file
from ego_fsar.models import build_backbone, build_model
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils.checkpoint_formats import (
    C2_RULES,
    apply_prefix_map,
    convert_state_dict,
    detect_format,
    rename,
)
from ego_fsar.utils.position_tables import position_grids, resize_grid_table
from tests.paths import PYSLOWFAST_CONFIGS

CONFIGS = os.path.join(PYSLOWFAST_CONFIGS, "Kinetics")


def slowfast_cfg(norm="batchnorm"):
    cfg = get_cfg()
    merge_file(cfg, os.path.join(CONFIGS, "c2", "SLOWFAST_8x8_R50.yaml"))
    cfg.NUM_GPUS = 0
    cfg.RESNET.WIDTH_PER_GROUP = 8
    cfg.SLOWFAST.BETA_INV = 4
    cfg.MODEL.NUM_CLASSES = 5
    cfg.BN.NORM_TYPE, cfg.BN.NUM_SPLITS = norm, 2
    return cfg


def vit_cfg(**vit):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = "VideoMAE", "vit", 5
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM = 4, 32, [3]
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS = 32, 2, 4
    for key, value in vit.items():
        cfg.VIT[key] = value
    return cfg


def randomized(model):
    """`model` with every float tensor of its state (BN statistics included) set at random."""
    torch.manual_seed(0)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.uniform_(0.5, 1.5)
    return model


def assert_same_state(a, b, skip=("num_batches_tracked",)):
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key in sa:
        if not key.endswith(skip):
            assert torch.equal(sa[key], sb[key]), key


# --------------------------------------------------------------------------------------------- #
# Caffe2 (PySlowFast .pkl)
# --------------------------------------------------------------------------------------------- #

@pytest.mark.parametrize("c2,name", [
    # Examples from PySlowFast's c2_model_loading.py and its model zoo blobs.
    ("nonlocal_conv3_1_theta_w", "s3.pathway0_nonlocal1.conv_theta.weight"),
    ("nonlocal_conv4_5_bn_s", "s4.pathway0_nonlocal5.bn.weight"),
    ("t_pool1_subsample_w", "s1_fuse.conv_f2s.weight"),
    ("t_pool1_subsample_bn_rm", "s1_fuse.bn.running_mean"),
    ("t_res4_5_branch2c_bn_subsample_w", "s4_fuse.conv_f2s.weight"),
    ("t_res4_5_branch2c_bn_subsample_bn_riv", "s4_fuse.bn.running_var"),
    ("res4_4_branch2c_bn_b", "s4.pathway0_res4.branch2.c_bn.bias"),
    ("res4_0_branch1_w", "s4.pathway0_res0.branch1.weight"),
    ("res2_0_branch1_bn_s", "s2.pathway0_res0.branch1_bn.weight"),
    ("conv1_w", "s1.pathway0_stem.conv.weight"),
    ("res_conv1_bn_riv", "s1.pathway0_stem.bn.running_var"),
    ("t_conv1_w", "s1.pathway1_stem.conv.weight"),
    ("t_res_conv1_bn_s", "s1.pathway1_stem.bn.weight"),
    ("t_res3_2_branch2b_w", "s3.pathway1_res2.branch2.b.weight"),
    ("pred_w", "head.projection.weight"),
    ("pred_b", "head.projection.bias"),
])
def test_caffe2_names(c2, name):
    assert rename(c2, C2_RULES) == name


_PATHWAY_PREFIX = {"0": "", "1": "t_"}
_TO_C2 = [  # PySlowFast module names -> caffe2 blob prefixes (the inverse of C2_RULES)
    (r"^s1\.pathway(\d)_stem\.conv$", lambda m: f"{_PATHWAY_PREFIX[m[1]]}conv1"),
    (r"^s1\.pathway(\d)_stem\.bn$", lambda m: f"{_PATHWAY_PREFIX[m[1]]}res_conv1_bn"),
    (r"^s(\d)\.pathway(\d)_res(\d+)\.branch1(_bn)?$",
     lambda m: f"{_PATHWAY_PREFIX[m[2]]}res{m[1]}_{m[3]}_branch1{m[4] or ''}"),
    (r"^s(\d)\.pathway(\d)_res(\d+)\.branch2\.([abc])(_bn)?$",
     lambda m: f"{_PATHWAY_PREFIX[m[2]]}res{m[1]}_{m[3]}_branch2{m[4]}{m[5] or ''}"),
    (r"^s1_fuse\.(conv_f2s|bn)$", lambda m: "t_pool1_subsample" + ("_bn" if m[1] == "bn" else "")),
    (r"^s(\d)_fuse\.(conv_f2s|bn)$", lambda m: f"t_res{m[1]}_0_branch2c_bn_subsample" + ("_bn" if m[2] == "bn" else "")),
    (r"^head\.projection$", lambda m: "pred"),
]


def to_c2(name):
    module, param = name.rsplit(".", 1)
    bn = module.endswith("bn")
    suffix = {"weight": "s" if bn else "w", "bias": "b", "running_mean": "rm", "running_var": "riv"}[param]
    for pattern, blob in _TO_C2:
        match = re.match(pattern, module)
        if match:
            return f"{blob(match)}_{suffix}"
    raise KeyError(name)


def write_c2(model, path):
    blobs = {to_c2(k): v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    blobs.update({"conv1_w_momentum": blobs["conv1_w"] * 0, "lr": 0.1, "model_iter": 1000})
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)


def test_caffe2_pkl_round_trip(tmp_path, caplog):
    source = randomized(build_model(slowfast_cfg()))
    path = str(tmp_path / "SLOWFAST_8x8_R50.pkl")
    write_c2(source, path)
    target = build_model(slowfast_cfg())
    with caplog.at_level(logging.INFO):
        assert cu.load_checkpoint(path, target, checkpoint_type="caffe2") == -1
    assert_same_state(source, target)
    assert "0 unexpected, 0 shape-mismatched" in caplog.text


def test_caffe2_into_sub_batchnorm(tmp_path):
    source = randomized(build_model(slowfast_cfg()))
    path = str(tmp_path / "c2.pkl")
    write_c2(source, path)
    target = build_model(slowfast_cfg(norm="sub_batchnorm"))
    cu.load_checkpoint(path, target, checkpoint_type="caffe2")
    mean = source.state_dict()["s2.pathway0_res0.branch2.a_bn.running_mean"]
    state = target.state_dict()
    assert torch.equal(state["s2.pathway0_res0.branch2.a_bn.bn.running_mean"], mean)
    assert torch.equal(state["s2.pathway0_res0.branch2.a_bn.split_bn.running_mean"], mean.repeat(2))
    assert torch.equal(state["s2.pathway0_res0.branch2.a_bn.weight"], source.state_dict()["s2.pathway0_res0.branch2.a_bn.weight"])


# --------------------------------------------------------------------------------------------- #
# PyTorch containers: PySlowFast .pyth, VideoMAE .pth, MM-CDFSL Lightning, CLIP, torchvision
# --------------------------------------------------------------------------------------------- #

def test_pyslowfast_pyth_round_trip(tmp_path):
    cfg = slowfast_cfg()
    source = randomized(build_model(cfg))
    path = str(tmp_path / "checkpoint_epoch_00004.pyth")
    state = {"module." + k: v for k, v in source.state_dict().items()}  # saved from DDP
    torch.save({"epoch": 3, "model_state": state, "optimizer_state": None, "cfg": cfg.dump()}, path)
    target = build_model(cfg)
    assert cu.load_checkpoint(path, target) == 3
    assert_same_state(source, target, skip=())


@pytest.mark.parametrize("container", ["model", "module"])
def test_videomae_pth_round_trip(tmp_path, container):
    source = randomized(build_model(vit_cfg())).eval()
    assert not any(".pos_embed" in k or k == "pos_embed" for k in source.state_dict())  # fixed table
    path = str(tmp_path / "videomae.pth")
    torch.save({container: source.state_dict(), "epoch": 10}, path)
    target = build_model(vit_cfg()).eval()
    converted = convert_state_dict(cu.extract_state_dict(torch.load(path)), target.state_dict())
    assert not any(cu.report_mismatch(target.state_dict(), converted).values())
    cu.load_checkpoint(path, target)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(source([x])["logits"], target([x])["logits"])


def test_videomae_checkpoint_into_prefixed_model():
    """A model that keeps the backbone under `backbone.` still receives VideoMAE's flat names."""
    source = randomized(build_backbone(vit_cfg(), "VideoViT"))
    wrapped = torch.nn.ModuleDict({"backbone": build_backbone(vit_cfg(), "VideoViT")})
    converted = convert_state_dict(source.state_dict(), wrapped.state_dict())
    assert set(converted) == set(wrapped.state_dict())
    two = torch.nn.ModuleDict({"student": build_backbone(vit_cfg(), "VideoViT"),
                               "teacher": build_backbone(vit_cfg(), "VideoViT")})
    assert set(convert_state_dict(source.state_dict(), two.state_dict())) == set(source.state_dict())


def test_mmcdfsl_lightning_checkpoint(tmp_path):
    cfg = vit_cfg(ENCODER_NORM=True)
    student = randomized(build_model(cfg))
    encoder = {k: v for k, v in student.state_dict().items() if not k.startswith(("fc_norm", "head"))}
    lightning = {f"_forward_module.student_rgb.encoder.{k}": v for k, v in encoder.items()}
    lightning.update({f"_forward_module.student_rgb.{k}": v for k, v in student.state_dict().items()
                      if k.startswith("fc_norm")})
    lightning.update({"_forward_module.student_rgb.head_action.weight": torch.zeros(204, 32),
                      "_forward_module.teacher_flow.encoder.norm.weight": torch.zeros(32)})
    path = str(tmp_path / "mmdistill.ckpt")
    torch.save({"state_dict": lightning, "epoch": 99}, path)
    target = build_model(cfg)
    prefix_map = [["_forward_module.student_rgb.encoder.", ""], ["_forward_module.student_rgb.", ""]]
    converted = convert_state_dict(cu.extract_state_dict(torch.load(path)), target.state_dict(), prefix_map=prefix_map)
    report = cu.report_mismatch(target.state_dict(), converted)
    assert report["missing"] == ["head.bias", "head.weight"]
    assert report["unexpected"] == ["_forward_module.teacher_flow.encoder.norm.weight", "head_action.weight"]
    cu.load_checkpoint(path, target, prefix_map=prefix_map)
    assert_same_state(student.backbone, target.backbone)


_TO_OPENAI = [  # CLIPViT names -> OpenAI CLIP visual names (the inverse of CLIP_RULES)
    (r"^patch_embed\.proj\.", "conv1."), (r"^cls_token$", "class_embedding"),
    (r"^pos_embed$", "positional_embedding"), (r"^norm_pre\.", "ln_pre."), (r"^norm\.", "ln_post."),
    (r"^blocks\.(\d+)\.", r"transformer.resblocks.\1."), (r"\.attn\.qkv\.(weight|bias)$", r".attn.in_proj_\1"),
    (r"\.attn\.proj\.", ".attn.out_proj."), (r"\.norm1\.", ".ln_1."), (r"\.norm2\.", ".ln_2."),
    (r"\.mlp\.fc1\.", ".mlp.c_fc."), (r"\.mlp\.fc2\.", ".mlp.c_proj."),
]


def clip_cfg(crop=32):
    cfg = vit_cfg()
    cfg.DATA.TRAIN_CROP_SIZE = crop
    cfg.VIT.PATCH_SIZE, cfg.VIT.PROJ_DIM = 8, 16
    return cfg


def test_clip_state_dict_round_trip(tmp_path):
    source = randomized(build_backbone(clip_cfg(), "CLIPViT"))
    openai = {"visual." + rename(k, _TO_OPENAI): v.half() for k, v in source.state_dict().items()}
    openai["visual.conv1.weight"] = openai["visual.conv1.weight"].squeeze(2)
    openai["logit_scale"] = torch.ones(())
    assert detect_format(openai) == "clip"
    path = str(tmp_path / "ViT-tiny.pt")
    torch.save(openai, path)
    target = build_backbone(clip_cfg(), "CLIPViT")
    cu.load_checkpoint(path, target)
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key].half().float()), key


def test_imagenet_resnet_inflation():
    """torchvision's ResNet-50 -> PySlowFast's I3D R50 (2D kernels repeated over time / T)."""
    cfg = get_cfg()
    merge_file(cfg, os.path.join(CONFIGS, "I3D_8x8_R50.yaml"))
    cfg.NUM_GPUS, cfg.MODEL.NUM_CLASSES = 0, 1000
    with torch.device("meta"):
        model_state = build_model(cfg).state_dict()
    image = torchvision.models.resnet50().state_dict()
    converted = convert_state_dict(image, model_state, inflate=True)
    assert not any(cu.report_mismatch(model_state, converted).values())
    stem = converted["s1.pathway0_stem.conv.weight"]
    assert stem.shape == (64, 3, 5, 7, 7)
    assert torch.allclose(stem, image["conv1.weight"].unsqueeze(2).expand_as(stem) / 5)
    inflated = converted["s2.pathway0_res1.branch2.a.weight"]
    assert inflated.shape == (64, 256, 3, 1, 1)
    assert torch.allclose(inflated.sum(2), image["layer1.1.conv1.weight"].squeeze(-1).squeeze(-1)[..., None, None], atol=1e-6)
    assert torch.equal(converted["s5.pathway0_res0.branch1_bn.running_var"], image["layer4.0.downsample.1.running_var"])
    assert torch.equal(converted["s4.pathway0_res5.branch2.c_bn.weight"], image["layer3.5.bn3.weight"])
    assert torch.equal(converted["head.projection.weight"], image["fc.weight"])
    not_inflated = convert_state_dict(image, model_state)
    assert "s1.pathway0_stem.conv.weight" in cu.report_mismatch(model_state, not_inflated)["shape_mismatch"]


# --------------------------------------------------------------------------------------------- #
# Position tables, prefix maps, formats
# --------------------------------------------------------------------------------------------- #

@pytest.mark.parametrize("frames,crop,grid", [(4, 64, (2, 4, 4)), (4, 48, (2, 3, 3)), (8, 32, (4, 2, 2))])
def test_learnable_video_pos_embed_is_interpolated(frames, crop, grid):
    source = randomized(build_backbone(vit_cfg(LEARNABLE_POS_EMBED=True), "VideoViT"))
    cfg = vit_cfg(LEARNABLE_POS_EMBED=True)
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE = frames, crop
    target = build_backbone(cfg, "VideoViT")
    grids = position_grids(target)
    assert grids == {"pos_embed": grid}
    converted = convert_state_dict(source.state_dict(), target.state_dict(), grids=grids)
    expected = resize_grid_table(source.pos_embed.detach()[0], (2, 2, 2), grid)
    assert torch.allclose(converted["pos_embed"][0], expected)
    target.load_state_dict(converted, strict=True)
    without_grid = convert_state_dict(source.state_dict(), target.state_dict())
    assert without_grid["pos_embed"].shape == source.pos_embed.shape  # left for the mismatch report


def test_clip_pos_embed_keeps_class_row():
    source = randomized(build_backbone(clip_cfg(32), "CLIPViT"))
    target = build_backbone(clip_cfg(48), "CLIPViT")
    converted = convert_state_dict(source.state_dict(), target.state_dict())
    assert converted["pos_embed"].shape == (37, 32)
    assert torch.equal(converted["pos_embed"][0], source.pos_embed.detach()[0])
    target.load_state_dict(converted, strict=True)


def test_resize_grid_table_properties():
    table = torch.randn(2 * 3 * 3, 5)
    assert resize_grid_table(table, (2, 3, 3), (2, 3, 3)) is table
    constant = torch.ones(2 * 3 * 3, 5) * torch.arange(5.0)
    assert torch.allclose(resize_grid_table(constant, (2, 3, 3), (4, 5, 6)), torch.ones(4 * 5 * 6, 5) * torch.arange(5.0))
    with pytest.raises(ValueError, match="does not cover"):
        resize_grid_table(table, (2, 2, 2), (2, 3, 3))


def test_prefix_map_and_formats():
    state = {"a.x": 1, "a.b.y": 2, "z": 3}
    assert apply_prefix_map(state, [["a.b.", "q."], ["a.", ""]]) == {"x": 1, "q.y": 2, "z": 3}
    with pytest.raises(ValueError, match="TRAIN.CHECKPOINT_PREFIX_MAP"):
        apply_prefix_map(state, [["a."]])
    assert detect_format({"conv1.weight": 0, "layer1.0.conv1.weight": 0}) == "torchvision"
    assert detect_format({"patch_embed.proj.weight": 0}) == "pytorch"
    assert detect_format({}, "caffe2") == "caffe2"
    with pytest.raises(ValueError, match="checkpoint type"):
        convert_state_dict({}, {}, checkpoint_type="tensorflow")
