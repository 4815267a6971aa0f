"""SpaceTimeViT (Frozen-in-Time / EgoVLP video tower): the release's names, shapes and outputs, divided
attention against masked full attention, the block's residual layout, and a released checkpoint loading
into VideoText with another number of frames.

`tests/fixtures/egovlp_space_time_reference.pt` was written by the EgoVLP release's own
`model/video_transformer.py` (`SpaceTimeTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
num_heads=4, num_frames=4)`, `num_classes=0`): `state_shapes`, its state-dict names and shapes; every
tensor set, in sorted-name order, to 0.2 * randn from a generator seeded 0; and `pooled_{4,3}_frames`,
its outputs for two [2, 3, F, 32, 32] clips drawn (in that order) from a generator seeded 1 (passed
as [B, F, C, H, W])."""
import os

import pytest
import torch
import torch.nn.functional as F

from ego_fsar.config import get_cfg
from ego_fsar.models.backbones.space_time_vit import DividedAttention, SpaceTimeBlock, SpaceTimeViT
from ego_fsar.utils.checkpoint import report_mismatch
from ego_fsar.utils.checkpoint_formats import convert_state_dict
from ego_fsar.utils.position_tables import position_grids
from tests.models.test_video_text import _model, tiny_video_text_cfg

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "egovlp_space_time_reference.pt")


def tiny_cfg(frames: int = 4):
    cfg = get_cfg()
    cfg.DATA.INPUT_CHANNEL_NUM, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE = [3], frames, 32
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = 32, 2, 4, 8
    return cfg


def test_names_shapes_and_outputs_are_the_releases():
    reference = torch.load(FIXTURE)
    model = SpaceTimeViT(tiny_cfg()).eval()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == reference["state_shapes"]
    g = torch.Generator().manual_seed(0)
    model.load_state_dict({k: 0.2 * torch.randn(v.shape, generator=g) for k, v in sorted(model.state_dict().items())})
    g = torch.Generator().manual_seed(1)
    for frames in (4, 3):
        clip = torch.randn(2, 3, frames, 32, 32, generator=g)
        with torch.no_grad():
            out = model([clip])
        torch.testing.assert_close(out.pooled, reference[f"pooled_{frames}_frames"], rtol=1e-4, atol=1e-5)
        assert out.frames.shape == (2, frames, 32)


@pytest.mark.parametrize("group", ["space", "time"])
def test_divided_attention_is_full_attention_masked_to_its_groups(group):
    torch.manual_seed(0)
    frames, spots, dim, heads = 3, 4, 16, 2
    attn = DividedAttention(dim, heads).eval()
    x = torch.randn(2, 1 + frames * spots, dim)
    frame = torch.arange(frames).repeat_interleave(spots)
    spot = torch.arange(spots).repeat(frames)
    same = (frame[:, None] == frame[None]) if group == "space" else (spot[:, None] == spot[None])
    allowed = torch.ones(1 + frames * spots, 1 + frames * spots, dtype=torch.bool)
    allowed[1:, 1:] = same  # the class token sees everything; every token sees the class token
    q, k, v = attn.qkv(x).view(2, -1, 3, heads, dim // heads).permute(2, 0, 3, 1, 4).unbind(0)
    expected = attn.proj(F.scaled_dot_product_attention(q, k, v, attn_mask=allowed).transpose(1, 2).reshape(2, -1, dim))
    torch.testing.assert_close(attn(x, group, frames), expected)


def test_time_attention_reaches_the_stream_only_through_space_attention():
    torch.manual_seed(0)
    block = SpaceTimeBlock(16, 2).eval()
    with torch.no_grad():
        for p in block.timeattn.parameters():
            p.normal_()
    x = torch.randn(2, 1 + 2 * 4, 16)
    full = block(x, 2)
    with torch.no_grad():
        block.attn.proj.weight.zero_()
        block.attn.proj.bias.zero_()
        without_space = block(x, 2)
        torch.testing.assert_close(without_space, x + block.mlp(block.norm2(x)))
        block.timeattn.proj.weight.mul_(3.0)
        torch.testing.assert_close(block(x, 2), without_space)
    assert not torch.allclose(full, without_space)


def test_time_attention_starts_as_a_no_op():
    block = SpaceTimeViT(tiny_cfg()).blocks[0].eval()
    x = torch.randn(1, 1 + 3 * 16, 32)
    assert torch.count_nonzero(block.timeattn(block.norm3(x), "time", 3)) == 0


def test_clip_longer_than_the_temporal_table_is_refused():
    with pytest.raises(ValueError, match="temporal table of 4 .*DATA.NUM_FRAMES"):
        SpaceTimeViT(tiny_cfg())([torch.zeros(1, 3, 5, 32, 32)])


def test_other_resolution_interpolates_the_spatial_table():
    out = SpaceTimeViT(tiny_cfg()).eval()([torch.randn(1, 3, 2, 48, 48)])
    assert out.pooled.shape == (1, 32) and out.frames.shape == (1, 2, 32)


def test_released_4_frame_tower_loads_into_an_8_frame_video_text(tmp_path):
    cfg = tiny_video_text_cfg(str(tmp_path))
    cfg.MODEL.BACKBONE, cfg.DATA.NUM_FRAMES = "SpaceTimeViT", 8
    model = _model(cfg)
    released = SpaceTimeViT(tiny_video_text_cfg()).state_dict()  # the 4-frame tower of the same size
    released = {k: torch.randn_like(v) for k, v in released.items()}
    checkpoint = {f"module.video_model.{k}": v for k, v in released.items()}
    checkpoint.update({"module.vid_proj.0.weight": torch.ones(8, 16), "module.vid_proj.0.bias": torch.zeros(8)})
    ours = model.state_dict()
    converted = convert_state_dict(checkpoint, ours, grids=position_grids(model))
    report = report_mismatch(ours, converted)
    assert not report["unexpected"] and not report["shape_mismatch"]
    assert not [k for k in report["missing"] if not k.startswith("head.")]
    temporal = converted["temporal_embed"]
    assert torch.equal(temporal[:, :4], released["temporal_embed"]) and torch.count_nonzero(temporal[:, 4:]) == 0
    assert torch.equal(converted["blocks.0.timeattn.qkv.weight"], released["blocks.0.timeattn.qkv.weight"])
    model.load_state_dict(converted, strict=False)
    assert model.encode_video([torch.randn(2, 3, 8, 16, 16)]).shape == (2, 8)


def _image_vit(state, image: torch.Tensor, heads: int) -> torch.Tensor:
    """An image ViT's normed class token (timm's layout: pre-norm blocks, class token first) [B, D]."""
    x = F.conv2d(image, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=8)
    x = torch.cat([state["cls_token"].expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1) + state["pos_embed"]
    for i in range(len({k.split(".")[1] for k in state if k.startswith("blocks.")})):
        p = {k[len(f"blocks.{i}."):]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        y = F.layer_norm(x, x.shape[-1:], p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        qkv = F.linear(y, p["attn.qkv.weight"], p["attn.qkv.bias"])
        q, k, v = qkv.unflatten(-1, (3, heads, -1)).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = x + F.linear(y, p["attn.proj.weight"], p["attn.proj.bias"])
        y = F.layer_norm(x, x.shape[-1:], p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        y = F.gelu(F.linear(y, p["mlp.fc1.weight"], p["mlp.fc1.bias"]))
        x = x + F.linear(y, p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    return F.layer_norm(x[:, 0], x.shape[-1:], state["norm.weight"], state["norm.bias"], eps=1e-6)


def test_an_image_vit_initialises_it_and_one_frame_gives_the_image_vits_output():
    """EgoVLP's start: ImageNet ViT weights (timm's names); what they lack (time attention, norm3, the
    temporal table) keeps its no-op start, so a 1-frame clip gives the image ViT's output."""
    model = SpaceTimeViT(tiny_cfg()).eval()
    g = torch.Generator().manual_seed(2)
    image_keys = [k for k in model.state_dict() if "timeattn" not in k and "norm3" not in k and k != "temporal_embed"]
    state = {k: 0.2 * torch.randn(model.state_dict()[k].shape, generator=g) for k in image_keys}
    report = report_mismatch(model.state_dict(), convert_state_dict(state, model.state_dict()))
    assert not report["unexpected"] and not report["shape_mismatch"]
    assert sorted(report["missing"]) == sorted(k for k in model.state_dict() if k not in image_keys)
    model.load_state_dict(state, strict=False)
    image = torch.randn(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(model([image.unsqueeze(2)]).pooled, _image_vit(state, image, heads=4),
                                   rtol=1e-5, atol=1e-5)
