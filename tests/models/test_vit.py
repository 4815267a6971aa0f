"""VideoViT / VideoMAE: architecture, names and counts vs VideoMAE's, outputs, resolutions, masking."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ego_fsar.config import get_cfg
from ego_fsar.models import build_backbone, build_model
from ego_fsar.models.backbones.masking import TubeMaskGenerator, visible_tokens
from ego_fsar.models.backbones.vit import sinusoid_table


def vit_cfg(dim=32, depth=2, heads=4, frames=4, crop=32, chans=3, patch=16, classes=5):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.MODEL_NAME = "VideoMAE"
    cfg.MODEL.ARCH = "vit"
    cfg.MODEL.NUM_CLASSES = classes
    cfg.MODEL.DROPOUT_RATE = 0.0
    cfg.DATA.NUM_FRAMES = frames
    cfg.DATA.TRAIN_CROP_SIZE = crop
    cfg.DATA.INPUT_CHANNEL_NUM = [chans]
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = dim, depth, heads, patch
    return cfg


def videomae_param_count(dim, depth, classes, chans=3, patch=16, tubelet=2, mlp_ratio=4):
    """Parameters of VideoMAE's modeling_finetune.VisionTransformer (qkv_bias, mean pooling)."""
    hidden = int(dim * mlp_ratio)
    patch_embed = dim * chans * tubelet * patch * patch + dim
    block = (2 * 2 * dim  # norm1, norm2
             + 3 * dim * dim + 2 * dim  # qkv weight, q_bias, v_bias
             + dim * dim + dim  # attn.proj
             + dim * hidden + hidden + hidden * dim + dim)  # mlp
    return patch_embed + depth * block + 2 * dim + dim * classes + classes  # + fc_norm + head


def videomae_keys(depth):
    keys = {"patch_embed.proj.weight", "patch_embed.proj.bias", "fc_norm.weight", "fc_norm.bias",
            "head.weight", "head.bias"}
    for i in range(depth):
        for name in ("norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.qkv.weight",
                     "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
                     "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
            keys.add(f"blocks.{i}.{name}")
    return keys


@pytest.fixture(scope="module")
def vit_b():
    """VideoMAE ViT-B/16, 400 classes, 16 x 224^2 input (built once on the meta device, never run)."""
    with torch.device("meta"):
        return build_model(vit_cfg(dim=768, depth=12, heads=12, frames=16, crop=224, classes=400))


def test_vit_b_matches_videomae_architecture(vit_b):
    state = vit_b.state_dict()
    assert set(state) == videomae_keys(12)
    shapes = {
        "patch_embed.proj.weight": (768, 3, 2, 16, 16),
        "blocks.0.attn.qkv.weight": (2304, 768),
        "blocks.0.attn.q_bias": (768,),
        "blocks.11.mlp.fc1.weight": (3072, 768),
        "blocks.11.mlp.fc2.weight": (768, 3072),
        "head.weight": (400, 768),
    }
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    total = sum(p.numel() for p in vit_b.parameters())
    assert total == videomae_param_count(768, 12, 400)
    assert 86.5e6 <= total <= 87.0e6  # VideoMAE ViT-B: 87M (paper), 86.5M (K400 fine-tuned model)
    assert vit_b.backbone.pos_grid == (8, 14, 14)
    assert vit_b.backbone.pos_embed.shape == (1, 1568, 768)


def test_vit_s_param_count():
    with torch.device("meta"):
        model = build_model(vit_cfg(dim=384, depth=12, heads=6, frames=16, crop=224, classes=400))
    total = sum(p.numel() for p in model.parameters())
    assert total == videomae_param_count(384, 12, 400)
    assert 21.5e6 <= total <= 22.5e6  # VideoMAE ViT-S: 22M


def test_sinusoid_table_is_videomae_formula():
    n, d = 7, 10
    angles = np.array([[p / np.power(10000, 2 * (j // 2) / d) for j in range(d)] for p in range(n)])
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    assert torch.allclose(sinusoid_table(n, d), torch.tensor(angles, dtype=torch.float32))


def _explicit_videomae_forward(model, x):
    """VideoMAE's forward written out with plain tensor ops (softmax attention, q/v biases)."""
    vit = model.backbone
    tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
    tokens = tokens + sinusoid_table(tokens.shape[1], tokens.shape[2])
    for blk in vit.blocks:
        a = blk.attn
        b, n, c = tokens.shape
        h = a.num_heads
        bias = torch.cat([a.q_bias, torch.zeros_like(a.v_bias), a.v_bias])
        qkv = F.linear(blk.norm1(tokens), a.qkv.weight, bias).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        attn = ((qkv[0] * (c // h) ** -0.5) @ qkv[1].transpose(-2, -1)).softmax(-1)
        tokens = tokens + a.proj((attn @ qkv[2]).transpose(1, 2).reshape(b, n, c))
        tokens = tokens + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(tokens))))
    return F.linear(vit.fc_norm(tokens.mean(1)), model.head.weight, model.head.bias)


def test_forward_matches_explicit_videomae_computation():
    torch.manual_seed(0)
    cfg = vit_cfg()
    cfg.VIT.HEAD_INIT_SCALE = 1.0
    model = build_model(cfg).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out = model([x])
        assert torch.allclose(out["logits"], _explicit_videomae_forward(model, x), atol=1e-5)
    assert out["embeddings"].shape == (2, 32)


def test_head_init_and_output_shapes():
    model = build_model(vit_cfg())
    assert 0.01e-3 < model.head.weight.std().item() < 0.03e-3  # normal(std 0.02) x HEAD_INIT_SCALE 0.001
    assert torch.all(model.head.bias == 0)
    out = model.backbone([torch.randn(2, 3, 4, 32, 32)])
    assert out.pooled.shape == (2, 32) and out.frames.shape == (2, 2, 32) and out.hidden is None


@pytest.mark.parametrize("chans,patch,crop", [(3, 16, 48), (2, 16, 32), (21, 4, 16)])
def test_channels_and_resolutions(chans, patch, crop):
    """RGB at a crop other than the configured 32 px, 2-channel flow, 21 pose heatmaps with 4-px patches."""
    backbone = build_backbone(vit_cfg(chans=chans, patch=patch), "VideoViT")
    out = backbone([torch.randn(1, chans, 4, crop, crop)])
    assert out.pooled.shape == (1, 32) and out.frames.shape == (1, 2, 32)
    assert backbone.patch_embed.grid((4, crop, crop)) == (2, crop // patch, crop // patch)


def test_non_square_input_and_bad_inputs():
    backbone = build_backbone(vit_cfg(), "VideoViT")
    assert backbone([torch.randn(1, 3, 4, 48, 32)]).pooled.shape == (1, 32)
    with pytest.raises(ValueError, match="VIT.PATCH_SIZE"):
        backbone([torch.randn(1, 3, 4, 40, 32)])
    with pytest.raises(ValueError, match="one pathway"):
        backbone([torch.randn(1, 3, 4, 32, 32), torch.randn(1, 3, 4, 32, 32)])


def test_hidden_layers():
    cfg = vit_cfg(depth=3)
    cfg.VIT.HIDDEN_LAYERS = [0, 2]
    out = build_backbone(cfg, "VideoViT")([torch.randn(2, 3, 4, 32, 32)])
    assert [tuple(h.shape) for h in out.hidden] == [(2, 2, 4, 32)] * 2
    cfg.VIT.HIDDEN_LAYERS = [3]
    with pytest.raises(ValueError, match="VIT.HIDDEN_LAYERS"):
        build_backbone(cfg, "VideoViT")


def test_cls_pooling_learnable_pos_and_layer_scale():
    cfg = vit_cfg()
    cfg.VIT.USE_MEAN_POOLING = False
    cfg.VIT.LEARNABLE_POS_EMBED = True
    cfg.VIT.INIT_VALUES = 0.1
    backbone = build_backbone(cfg, "VideoViT")
    state = backbone.state_dict()
    assert {"cls_token", "pos_embed", "norm.weight", "blocks.0.gamma_1", "blocks.1.gamma_2"} <= set(state)
    assert not any(k.startswith("fc_norm") for k in state)
    assert state["pos_embed"].shape == (1, 8, 32)
    for crop in (32, 64):
        out = backbone([torch.randn(2, 3, 4, crop, crop)])
        assert out.pooled.shape == (2, 32) and out.frames.shape == (2, 2, 32)


def test_encoder_norm_is_videomae_pretraining_layout():
    cfg = vit_cfg()
    cfg.VIT.ENCODER_NORM = True
    assert {"norm.weight", "fc_norm.weight"} <= set(build_backbone(cfg, "VideoViT").state_dict())


def test_tube_masks_are_seeded_and_shaped():
    masks = TubeMaskGenerator(0.75, seed=3)(4, (2, 4, 4))
    assert masks.shape == (4, 32) and masks.dtype == torch.bool
    per_slot = masks.view(4, 2, 16)
    assert torch.equal(per_slot[:, 0], per_slot[:, 1])  # a tube: same positions in every slot
    assert per_slot.sum(2).eq(12).all()  # int(0.75 * 16) masked per slot
    again = TubeMaskGenerator(0.75, seed=3)
    assert torch.equal(again(4, (2, 4, 4)), masks)
    assert not torch.equal(again(4, (2, 4, 4)), masks)  # the next draw differs
    with pytest.raises(ValueError, match="MASK.RATIO"):
        TubeMaskGenerator(1.0)


def test_masked_encoder_sees_visible_tokens_only():
    cfg = vit_cfg(crop=64)
    cfg.VIT.HIDDEN_LAYERS = [1]
    backbone = build_backbone(cfg, "VideoViT").eval()
    mask = TubeMaskGenerator(0.5, seed=0)(2, (2, 4, 4))
    x = torch.randn(2, 3, 4, 64, 64)
    out = backbone([x], mask=mask)
    assert out.pooled.shape == (2, 32) and out.frames.shape == (2, 2, 32)
    assert out.hidden[0].shape == (2, 2, 8, 32)
    hidden_pos = mask[0, :16].view(4, 4).nonzero()[0]  # a masked patch of clip 0
    y = x.clone()
    r, c = hidden_pos.tolist()
    y[0, :, :, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] += 5.0
    with torch.no_grad():
        assert torch.allclose(backbone([x], mask=mask).pooled, backbone([y], mask=mask).pooled)
        assert not torch.allclose(backbone([x]).pooled, backbone([y]).pooled)


def test_uneven_masks_are_rejected():
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, 0] = True
    with pytest.raises(ValueError, match="same number of tokens"):
        visible_tokens(torch.randn(1, 8, 4), mask, num_slots=2)


def test_drop_path_and_attention_dropout_train_mode():
    cfg = vit_cfg()
    cfg.VIT.DROP_PATH_RATE = 0.5
    cfg.VIT.ATTN_DROP_RATE = 0.1
    backbone = build_backbone(cfg, "VideoViT")
    x = torch.randn(4, 3, 4, 32, 32)
    backbone.train()
    assert not torch.allclose(backbone([x]).pooled, backbone([x]).pooled)
    backbone.eval()
    assert torch.allclose(backbone([x]).pooled, backbone([x]).pooled)


def test_frames_are_per_tubelet():
    backbone = build_backbone(vit_cfg(frames=8), "VideoViT")
    assert backbone([torch.randn(1, 3, 8, 32, 32)]).frames.shape == (1, 4, 32)
