"""SlowFast / ResNet (Slow, I3D, C2D) backbones: PySlowFast layout, shapes, config errors."""
import json
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from ego_fsar.config import get_cfg, merge_file, merge_list
from ego_fsar.models import MODEL_REGISTRY, backbone_dim, build_backbone, build_model
from ego_fsar.models.backbones.norm_helper import SubBatchNorm3d
from ego_fsar.models.backbones.resnet_helper import PathwayStage, ResStage
from ego_fsar.models.backbones.stem_helper import VideoModelStem
from tests.paths import FIXTURES, PYSLOWFAST_CONFIGS

CONFIGS = Path(PYSLOWFAST_CONFIGS)
YAMLS = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml"))


def _pyslowfast_cfg(yaml: str, *opts):
    cfg = get_cfg()
    merge_file(cfg, str(CONFIGS / yaml))
    merge_list(cfg, opts)
    cfg.NUM_GPUS = 0
    return cfg


def _tiny_cfg(arch: str = "slowfast", *opts):
    """R18-deep bottleneck net of width 4 (fast pathway: width 1), 8 frames, ALPHA 4."""
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.ARCH = arch
    cfg.MODEL.MODEL_NAME = "SlowFast" if arch == "slowfast" else "ResNet"
    cfg.DATA.INPUT_CHANNEL_NUM = [3, 3] if arch == "slowfast" else [3]
    cfg.RESNET.DEPTH = 18
    cfg.RESNET.WIDTH_PER_GROUP = 4
    cfg.RESNET.NUM_BLOCK_TEMP_KERNEL = [[2], [2], [2], [2]]
    cfg.SLOWFAST.ALPHA = 4
    cfg.SLOWFAST.BETA_INV = 4
    merge_list(cfg, opts)
    return cfg


def _clip(cfg, size: int = 64, batch: int = 2, frames: int = 8):
    torch.manual_seed(0)
    fast = torch.randn(batch, 3, frames, size, size)
    if cfg.MODEL.ARCH == "slowfast":
        return [fast[:, :, :: cfg.SLOWFAST.ALPHA].clone(), fast]
    return [fast]


def _num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("fixture", ["pyslowfast_slowfast_r50_keys.json", "pyslowfast_slow_r50_keys.json"])
def test_state_dict_matches_pyslowfast(fixture):
    ref = json.loads((Path(FIXTURES) / fixture).read_text())
    cfg = _pyslowfast_cfg(ref["config"], "MODEL.NUM_CLASSES", ref["num_classes"])
    model = build_model(cfg)
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert dict(map(tuple, ours)) == {k: s for k, s in ref["state_dict"]}
    backbone_ref = [[k, s] for k, s in ref["state_dict"] if not k.startswith("head.")]
    assert [[k, list(v.shape)] for k, v in model.backbone.state_dict().items()] == backbone_ref


@pytest.mark.parametrize("yaml, count", [
    ("Kinetics/c2/SLOWFAST_8x8_R101_101_101.yaml", 62_826_968),
    ("Kinetics/c2/SLOWFAST_8x8_R50.yaml", 34_566_488),
])
def test_parameter_counts(yaml, count):
    cfg = _pyslowfast_cfg(yaml)
    assert cfg.MODEL.NUM_CLASSES == 400
    assert _num_params(build_model(cfg)) == count


@pytest.mark.parametrize("yaml", YAMLS)
def test_pyslowfast_yamls_build(yaml):
    cfg = _pyslowfast_cfg(yaml)
    model = build_model(cfg)
    assert isinstance(model, MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME))
    expected_dim = 2304 if cfg.MODEL.ARCH == "slowfast" else 2048
    assert model.backbone.out_dim == backbone_dim(cfg) == expected_dim
    assert model.head.projection.weight.shape == (cfg.MODEL.NUM_CLASSES, expected_dim)


def test_epic_two_heads():
    cfg = _pyslowfast_cfg("Kinetics/SLOWFAST_8x8_R50.yaml", "MODEL.NUM_CLASSES", [97, 300])
    state = build_model(cfg).state_dict()
    assert state["head.projection_verb.weight"].shape == (97, 2304)
    assert state["head.projection_noun.weight"].shape == (300, 2304)
    assert "head.projection.weight" not in state


@pytest.mark.parametrize("size, tokens", [(64, (16, 4)), (112, (49, 16))])
def test_slowfast_output_shapes(size, tokens):
    cfg = _tiny_cfg("slowfast", "RESNET.HIDDEN_STAGES", ["s4", "s5"])
    backbone = build_backbone(cfg)
    out = backbone(_clip(cfg, size))
    slow, fast = 4 * 32, 4 * 32 // 4
    assert backbone.out_dim == type(backbone).out_dim_from_cfg(cfg) == slow + fast
    assert out.pooled.shape == (2, slow + fast)
    assert out.frames.shape == (2, 8, slow + fast)
    assert [h.shape for h in out.hidden] == [(2, 8, tokens[0], (slow + fast) // 2), (2, 8, tokens[1], slow + fast)]


def test_hidden_maps_pooled_to_a_shared_grid():
    cfg = _tiny_cfg("slowfast", "RESNET.HIDDEN_STAGES", ["s3", "s4", "s5"], "RESNET.HIDDEN_SPATIAL_SIZE", 2)
    pooled = build_backbone(cfg).eval()
    out = pooled(_clip(cfg, 64))
    assert [h.shape[:3] for h in out.hidden] == [(2, 8, 4)] * 3
    # s5's grid is 2x2 at 64 px already: pooling leaves it as it is.
    native = build_backbone(_tiny_cfg("slowfast", "RESNET.HIDDEN_STAGES", ["s5"])).eval()
    native.load_state_dict(pooled.state_dict())
    assert torch.allclose(native(_clip(cfg, 64)).hidden[0], out.hidden[2])


def test_slowfast_frames_repeat_slow_pathway():
    cfg = _tiny_cfg("slowfast")
    backbone = build_backbone(cfg).eval()
    with torch.no_grad():
        out = backbone(_clip(cfg))
    slow = out.frames[:, :, :128]
    assert out.hidden is None
    assert torch.equal(slow[:, :4], slow[:, :1].expand(-1, 4, -1))
    assert torch.equal(slow[:, 4:], slow[:, 4:5].expand(-1, 4, -1))
    assert not torch.allclose(slow[:, 0], slow[:, 4])
    torch.testing.assert_close(out.pooled, out.frames.mean(1))


@pytest.mark.parametrize("arch, frames", [("slow", 8), ("i3d", 4), ("c2d", 4)])
@pytest.mark.parametrize("size", [64, 112])
def test_resnet_output_shapes(arch, frames, size):
    cfg = _tiny_cfg(arch, "RESNET.HIDDEN_STAGES", ["s5", "s2"])
    out = build_backbone(cfg)(_clip(cfg, size))
    assert out.pooled.shape == (2, 128)
    assert out.frames.shape == (2, frames, 128)
    s2_side, s5_side = size // 4, -(-size // 32)
    assert [h.shape for h in out.hidden] == [(2, frames, s5_side**2, 128), (2, 8, s2_side**2, 16)]


def test_temporal_kernels_follow_arch():
    def kernel(state, name):
        return state[f"{name}.branch2.a.weight"].shape[2]

    i3d = build_backbone(_tiny_cfg("i3d")).state_dict()
    assert i3d["s1.pathway0_stem.conv.weight"].shape[2] == 5
    assert [kernel(i3d, f"s{s}.pathway0_res{i}") for s in (3, 5) for i in (0, 1)] == [3, 1, 1, 3]
    slow = build_backbone(_tiny_cfg("slow", "RESNET.NUM_BLOCK_TEMP_KERNEL", [[2], [2], [1], [2]])).state_dict()
    assert [kernel(slow, f"s{s}.pathway0_res{i}") for s in (3, 4) for i in (0, 1)] == [1, 1, 3, 1]


def test_forward_leaves_inputs_unchanged_and_accepts_channels_last():
    cfg = _tiny_cfg("slowfast")
    backbone = build_backbone(cfg).eval()
    inputs = _clip(cfg)
    copies = [t.clone() for t in inputs]
    items = list(inputs)
    with torch.no_grad():
        out = backbone(inputs)
        out_cl = backbone([t.to(memory_format=torch.channels_last_3d) for t in inputs])
    assert len(inputs) == 2 and all(a is b for a, b in zip(inputs, items))
    assert all(torch.equal(a, b) for a, b in zip(inputs, copies))
    torch.testing.assert_close(out_cl.pooled, out.pooled, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out_cl.frames, out.frames, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch, count", [("slowfast", 1), ("slowfast", 3), ("slow", 2)])
def test_wrong_pathway_count_raises(arch, count):
    cfg = _tiny_cfg(arch)
    fast = _clip(cfg)[-1]
    with pytest.raises(ValueError, match="MODEL.ARCH.*DATA.INPUT_CHANNEL_NUM"):
        build_backbone(cfg)([fast] * count)


def test_tensor_instead_of_list_raises():
    cfg = _tiny_cfg("slow")
    with pytest.raises(ValueError, match="list of 1 pathway"):
        build_backbone(cfg)(_clip(cfg)[0])


@pytest.mark.parametrize("name, arch, channels, match", [
    ("SlowFast", "slowfast", [3], "DATA.INPUT_CHANNEL_NUM"),
    ("ResNet", "slow", [3, 3], "DATA.INPUT_CHANNEL_NUM"),
    ("ResNet", "slowfast", [3], "MODEL.ARCH 'slowfast' is not a ResNet"),
    ("SlowFast", "i3d", [3, 3], "MODEL.ARCH 'i3d' is not a SlowFast"),
])
def test_arch_and_pathways_must_agree(name, arch, channels, match):
    cfg = _tiny_cfg("slowfast", "MODEL.ARCH", arch, "DATA.INPUT_CHANNEL_NUM", channels)
    with pytest.raises(ValueError, match=match):
        build_backbone(cfg, name)


@pytest.mark.parametrize("opts, match", [
    (["RESNET.NUM_BLOCK_TEMP_KERNEL", [[3], [2], [2], [2]]], r"RESNET.NUM_BLOCK_TEMP_KERNEL\[0\]"),
    (["RESNET.TRANS_FUNC", "x3d_transform"], "RESNET.TRANS_FUNC"),
    (["RESNET.TRANS_FUNC", "basic_transform", "RESNET.NUM_GROUPS", 2], "RESNET.NUM_GROUPS"),
    (["RESNET.HIDDEN_STAGES", ["res4"]], "RESNET.HIDDEN_STAGES"),
    (["RESNET.DEPTH", 34], "RESNET.DEPTH"),
    (["SLOWFAST.BETA_INV", 8], "SLOWFAST.BETA_INV"),
    (["NONLOCAL.INSTANTIATION", "gaussian", "NONLOCAL.LOCATION", [[[]], [[0]], [[]], [[]]]], "NONLOCAL.INSTANTIATION"),
    (["BN.NORM_TYPE", "groupnorm"], "BN.NORM_TYPE"),
])
def test_bad_config_raises(opts, match):
    with pytest.raises(ValueError, match=match):
        build_backbone(_tiny_cfg("slowfast", *opts))


def test_nonlocal_blocks():
    cfg = _tiny_cfg(
        "slowfast",
        "NONLOCAL.LOCATION", [[[], []], [[1], [0]], [[0], []], [[], []]],
        "NONLOCAL.GROUP", [[1], [2], [2], [1]],
        "NONLOCAL.INSTANTIATION", "softmax",
    )
    backbone = build_backbone(cfg)
    state = backbone.state_dict()
    names = {k.rsplit(".", 2)[0] for k in state if "nonlocal" in k}
    assert names == {"s3.pathway0_nonlocal1", "s3.pathway1_nonlocal0", "s4.pathway0_nonlocal0"}
    assert state["s3.pathway0_nonlocal1.conv_theta.weight"].shape == (16, 32, 1, 1, 1)
    assert state["s3.pathway0_nonlocal1.conv_out.weight"].shape == (32, 16, 1, 1, 1)
    out = backbone(_clip(cfg))
    assert out.pooled.shape == (2, 160) and torch.isfinite(out.pooled).all()


def test_nonlocal_group_must_divide_time():
    cfg = _tiny_cfg("slow", "NONLOCAL.LOCATION", [[[]], [[0]], [[]], [[]]], "NONLOCAL.GROUP", [[1], [3], [1], [1]])
    with pytest.raises(ValueError, match="NONLOCAL.GROUP"):
        build_backbone(cfg)(_clip(cfg))


@pytest.mark.parametrize("zero_bn, zero_conv", [(True, False), (False, True)])
def test_initialisation(zero_bn, zero_conv):
    cfg = _tiny_cfg(
        "slow", "NONLOCAL.LOCATION", [[[]], [[0]], [[]], [[]]],
        "RESNET.ZERO_INIT_FINAL_BN", zero_bn, "RESNET.ZERO_INIT_FINAL_CONV", zero_conv,
    )
    state = build_backbone(cfg).state_dict()
    final_bn = 0.0 if zero_bn else 1.0
    assert (state["s2.pathway0_res0.branch2.c_bn.weight"] == final_bn).all()
    assert (state["s3.pathway0_nonlocal0.bn.weight"] == final_bn).all()
    assert (state["s2.pathway0_res0.branch2.a_bn.weight"] == 1).all()
    assert (state["s2.pathway0_res0.branch1_bn.bias"] == 0).all()
    assert (state["s2.pathway0_res0.branch2.c.weight"] == 0).all() == zero_conv
    assert (state["s3.pathway0_nonlocal0.conv_theta.bias"] == 0).all()
    weight = state["s5.pathway0_res0.branch2.b.weight"]
    fan_out = weight.shape[0] * weight[0, 0].numel()
    assert weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.1)


def test_sub_batchnorm():
    cfg = _tiny_cfg("slow", "BN.NORM_TYPE", "sub_batchnorm", "BN.NUM_SPLITS", 2)
    backbone = build_backbone(cfg)
    norm = backbone.s2.pathway0_res0.branch2.a_bn
    assert isinstance(norm, SubBatchNorm3d)
    assert norm.split_bn.running_mean.shape == (2 * norm.bn.running_mean.shape[0],)
    backbone(_clip(cfg, batch=4))
    split_means = norm.split_bn.running_mean.view(2, -1)
    assert not torch.allclose(split_means[0], split_means[1])
    backbone.eval()
    torch.testing.assert_close(norm.bn.running_mean, split_means.mean(0))
    with pytest.raises(ValueError, match="BN.NUM_SPLITS"):
        backbone.train()(_clip(cfg, batch=3))


def test_sync_batchnorm_is_batchnorm_on_cpu():
    backbone = build_backbone(_tiny_cfg("slowfast", "BN.NORM_TYPE", "sync_batchnorm", "BN.NUM_SYNC_DEVICES", 4))
    assert type(backbone.s1.pathway0_stem.bn) is torch.nn.BatchNorm3d


def test_checkpoint_round_trip_is_flat():
    cfg = _tiny_cfg("slowfast", "MODEL.NUM_CLASSES", 5)
    model = build_model(cfg)
    model(_clip(cfg))
    state = model.state_dict()
    assert not any(k.startswith("backbone.") for k in state)
    assert "s1_fuse.conv_f2s.weight" in state and "head.projection.weight" in state
    torch.manual_seed(1)
    fresh = build_model(cfg)
    fresh.load_state_dict(state, strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    model.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(_clip(cfg))["logits"], model(_clip(cfg))["logits"])


def test_blocks_take_their_norm_and_activation():
    stem = VideoModelStem([3], [8], [1], partial(nn.GroupNorm, 2), nn.GELU)
    stage = ResStage([PathwayStage(8, 16, 4, [3, 1], stride=2)], "bottleneck_transform", 1,
                     partial(nn.GroupNorm, 2), activation=nn.GELU)
    out = stage(stem([torch.randn(2, 3, 4, 32, 32)]))[0]
    assert out.shape == (2, 16, 4, 4, 4)
    modules = [*stem.modules(), *stage.modules()]
    assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm3d)) for m in modules)
    assert sum(isinstance(m, nn.GELU) for m in modules) == 1 + 2 * 3  # the stem's, then a, b and the sum per block
    assert sum(isinstance(m, nn.GroupNorm) for m in modules) == 1 + 2 * 3 + 1  # + the projection shortcut's


def test_inplace_relu_follows_the_config():
    for inplace in (True, False):
        net = build_backbone(_tiny_cfg("slowfast", "RESNET.INPLACE_RELU", inplace))
        relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
        assert relus and all(m.inplace is inplace for m in relus)
