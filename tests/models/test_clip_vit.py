"""CLIPViT: CLIP ViT-B/16 visual tower sizes and names, OpenAI key conversion, per-frame outputs."""
import pytest
import torch
import torch.nn.functional as F

from ego_fsar.config import get_cfg
from ego_fsar.models import build_backbone
from ego_fsar.utils.checkpoint_formats import convert_state_dict


def clip_cfg(width=32, layers=2, heads=4, patch=8, crop=32, proj=16, hidden=()):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.ARCH = "vit"
    cfg.DATA.INPUT_CHANNEL_NUM = [3]
    cfg.DATA.TRAIN_CROP_SIZE = crop
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = width, layers, heads, patch
    cfg.VIT.PROJ_DIM = proj
    cfg.VIT.HIDDEN_LAYERS = list(hidden)
    return cfg


def clip_visual_param_count(width, layers, patch, grid, out):
    """Parameters of clip/model.py VisionTransformer."""
    block = 3 * width * width + 3 * width + width * width + width + 4 * width * width + 4 * width \
        + 4 * width * width + width + 4 * width  # attn in/out, mlp c_fc/c_proj, ln_1, ln_2
    return 3 * width * patch * patch + width + (grid * grid + 1) * width + 2 * width + layers * block \
        + 2 * width + width * out


def openai_visual_state(width, layers, patch, grid, out, seed=0):
    """A random state dict with OpenAI CLIP's visual names and shapes (`visual.` prefix)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.1):
        return scale * torch.randn(*shape, generator=g)

    state = {"conv1.weight": rand(width, 3, patch, patch), "class_embedding": rand(width),
             "positional_embedding": rand(grid * grid + 1, width), "ln_pre.weight": 1 + rand(width),
             "ln_pre.bias": rand(width), "ln_post.weight": 1 + rand(width), "ln_post.bias": rand(width),
             "proj": rand(width, out)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        state.update({
            p + "attn.in_proj_weight": rand(3 * width, width), p + "attn.in_proj_bias": rand(3 * width),
            p + "attn.out_proj.weight": rand(width, width), p + "attn.out_proj.bias": rand(width),
            p + "ln_1.weight": 1 + rand(width), p + "ln_1.bias": rand(width),
            p + "mlp.c_fc.weight": rand(4 * width, width), p + "mlp.c_fc.bias": rand(4 * width),
            p + "mlp.c_proj.weight": rand(width, 4 * width), p + "mlp.c_proj.bias": rand(width),
            p + "ln_2.weight": 1 + rand(width), p + "ln_2.bias": rand(width),
        })
    return {"visual." + k: v for k, v in state.items()}


def openai_forward(state, image, heads, layer_tokens=None):
    """clip/model.py VisionTransformer.forward on one batch of images, from the OpenAI state dict.
    Also returns `ln_post(tokens) @ proj` of the patch tokens after block `layer_tokens`."""
    s = {k[len("visual."):]: v for k, v in state.items()}
    width = s["class_embedding"].shape[0]
    x = F.conv2d(image, s["conv1.weight"], stride=s["conv1.weight"].shape[-1]).flatten(2).permute(0, 2, 1)
    x = torch.cat([s["class_embedding"].expand(x.shape[0], 1, width), x], 1) + s["positional_embedding"]
    x = F.layer_norm(x, (width,), s["ln_pre.weight"], s["ln_pre.bias"]).permute(1, 0, 2)
    tokens = None
    i = 0
    while f"transformer.resblocks.{i}.ln_1.weight" in s:
        p = f"transformer.resblocks.{i}."
        y = F.layer_norm(x, (width,), s[p + "ln_1.weight"], s[p + "ln_1.bias"])
        x = x + F.multi_head_attention_forward(
            y, y, y, width, heads, s[p + "attn.in_proj_weight"], s[p + "attn.in_proj_bias"], None, None, False,
            0.0, s[p + "attn.out_proj.weight"], s[p + "attn.out_proj.bias"], need_weights=False)[0]
        y = F.linear(F.layer_norm(x, (width,), s[p + "ln_2.weight"], s[p + "ln_2.bias"]),
                     s[p + "mlp.c_fc.weight"], s[p + "mlp.c_fc.bias"])
        x = x + F.linear(y * torch.sigmoid(1.702 * y), s[p + "mlp.c_proj.weight"], s[p + "mlp.c_proj.bias"])
        if i == layer_tokens:
            tokens = F.layer_norm(x.permute(1, 0, 2)[:, 1:], (width,), s["ln_post.weight"], s["ln_post.bias"]) @ s["proj"]
        i += 1
    cls = F.layer_norm(x[0], (width,), s["ln_post.weight"], s["ln_post.bias"])
    return cls @ s["proj"], tokens


@pytest.fixture(scope="module")
def clip_b16():
    """CLIP ViT-B/16 visual (built once on the meta device, never run)."""
    with torch.device("meta"):
        return build_backbone(clip_cfg(width=768, layers=12, heads=12, patch=16, crop=224, proj=512), "CLIPViT")


def test_clip_b16_sizes_and_names(clip_b16):
    total = sum(p.numel() for p in clip_b16.parameters())
    assert total == clip_visual_param_count(768, 12, 16, 14, 512)
    assert 86.1e6 <= total <= 86.3e6  # CLIP ViT-B/16 visual: 86.2M
    state = clip_b16.state_dict()
    shapes = {"patch_embed.proj.weight": (768, 3, 1, 16, 16), "cls_token": (768,), "pos_embed": (197, 768),
              "blocks.11.attn.qkv.weight": (2304, 768), "blocks.11.attn.qkv.bias": (2304,),
              "blocks.0.mlp.fc1.weight": (3072, 768), "norm.weight": (768,), "proj": (768, 512)}
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert len([k for k in state if k.endswith("attn.qkv.weight")]) == 12
    assert clip_b16.out_dim == 512 and "patch_embed.proj.bias" not in state


def test_openai_checkpoint_converts_and_matches_clip_per_frame():
    cfg = clip_cfg(hidden=[0, 1])
    backbone = build_backbone(cfg, "CLIPViT").eval()
    full = openai_visual_state(32, 2, 8, 4, 16)
    text = {"token_embedding.weight": torch.zeros(10, 8), "transformer.resblocks.0.attn.in_proj_weight": torch.zeros(24, 8),
            "ln_final.weight": torch.zeros(8), "text_projection": torch.zeros(8, 16), "logit_scale": torch.zeros(())}
    checkpoint = {k: v.half() for k, v in {**full, **text}.items()}  # OpenAI weights are fp16
    converted = convert_state_dict(checkpoint, backbone.state_dict())
    assert set(converted) == set(backbone.state_dict())
    assert converted["patch_embed.proj.weight"].dtype == torch.float32
    backbone.load_state_dict(converted, strict=True)

    reference = {k: v.half().float() for k, v in full.items()}
    video = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = backbone([video])
        for t in range(3):
            cls, tokens = openai_forward(reference, video[:, :, t], heads=4, layer_tokens=1)
            assert torch.allclose(out.frames[:, t], cls, atol=1e-4)
            assert torch.allclose(out.hidden[1][:, t], tokens, atol=1e-4)
    assert out.pooled.shape == (2, 16) and torch.allclose(out.pooled, out.frames.mean(1))
    assert [tuple(h.shape) for h in out.hidden] == [(2, 3, 16, 16)] * 2


def test_other_resolution_interpolates_positions():
    backbone = build_backbone(clip_cfg(), "CLIPViT")
    out = backbone([torch.randn(1, 3, 2, 48, 48)])
    assert out.frames.shape == (1, 2, 16)


def test_no_projection():
    cfg = clip_cfg(proj=0)
    backbone = build_backbone(cfg, "CLIPViT")
    assert backbone.proj is None and backbone.out_dim == 32
    assert backbone([torch.randn(1, 3, 2, 32, 32)]).pooled.shape == (1, 32)
