"""MM-CDFSL stage 1: tube masks, the encoder on visible tokens, VideoMAE's reconstruction targets."""
import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.models import build_model
from ego_fsar.models.backbones.masking import TubeMaskGenerator
from ego_fsar.models.methods.masked_pretrain import patchify, reconstruction_targets


def tiny_vit_cfg(modality="rgb", channels=3, patch=8, size=32):
    """A 2-block ViT on 4-frame clips, 4x4 spatial tokens, with a 1-block decoder."""
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.MODEL_NAME = "MaskedVideoPretrain"
    cfg.MODEL.NUM_CLASSES = 4
    cfg.MODEL.DROPOUT_RATE = 0.0
    cfg.DATA.MODALITIES = [modality]
    cfg.DATA.INPUT_CHANNEL_NUM = [channels]
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 4, size, size
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = 32, 2, 2, patch
    cfg.VIT.ENCODER_NORM = True
    cfg.MASK.RATIO = 0.75
    cfg.MASK.DECODER_DIM, cfg.MASK.DECODER_DEPTH, cfg.MASK.DECODER_NUM_HEADS = 16, 1, 2
    return cfg


def test_tube_mask_keeps_the_configured_tokens_in_every_frame():
    cfg = tiny_vit_cfg()
    masks = TubeMaskGenerator.from_cfg(cfg)(3, (2, 4, 4)).view(3, 2, 16)
    assert masks.sum(2).eq(int(0.75 * 16)).all()
    assert torch.equal(masks[:, 0], masks[:, 1])  # the same tube in every temporal slot
    model = build_model(cfg)
    x = torch.randn(3, 3, 4, 32, 32)
    tokens, _, _ = model.encoder.encode([x], masks.flatten(1))
    assert tokens.shape == (3, 2 * 4, 32)  # the encoder sees the 4 visible tokens of each slot only


def test_patch_targets_are_videomae_normalised_patches():
    torch.manual_seed(0)
    videos = torch.rand(2, 3, 4, 16, 16)
    target = reconstruction_targets(videos, tubelet=2, patch=8, normalize=True)
    assert target.shape == (2, 2 * 2 * 2, 2 * 8 * 8 * 3)
    # token 5 = slot 1, row 0, column 1: frames 2-3, rows 0-7, columns 8-15, pixels (t, h, w) then channel
    patch = videos[1, :, 2:4, 0:8, 8:16].reshape(3, -1).t()
    expected = (patch - patch.mean(0)) / (patch.std(0, unbiased=True) + 1e-6)
    torch.testing.assert_close(target[1, 5], expected.flatten())
    raw = reconstruction_targets(videos, 2, 8, normalize=False)
    torch.testing.assert_close(raw[1, 5], patch.flatten())
    assert torch.equal(patchify(videos, 2, 8).flatten(2), raw)


def test_reconstruction_loss_reads_the_masked_patches_only():
    cfg = tiny_vit_cfg()
    model = build_model(cfg)
    model.decoder.head.weight.data.zero_()
    model.decoder.head.bias.data.zero_()  # predicts 0: the loss is the mean square of the targets
    x = torch.randn(2, 3, 4, 32, 32)
    mask = TubeMaskGenerator.from_cfg(cfg)(2, (2, 4, 4))
    out = model([x])
    videos = x * model.input_std + model.input_mean
    target = reconstruction_targets(videos, 2, 8, True)[mask].reshape(2, -1, 2 * 8 * 8 * 3)
    assert target.shape[1] == 2 * 12
    torch.testing.assert_close(out["loss_recon"], target.pow(2).mean())
    assert out["logits"].shape == (2, 4) and "loss_recon_target" not in out


@pytest.mark.parametrize("modality,channels,patch,size", [("flow", 2, 8, 32), ("pose", 5, 2, 8)])
def test_flow_and_pose_share_the_token_grid_and_train(modality, channels, patch, size):
    cfg = tiny_vit_cfg(modality, channels, patch, size)
    cfg.DATA.UNLABELLED_SPLIT = "unlabelled"
    model = build_model(cfg)
    assert model.BATCH_INPUTS == ("target_inputs",)
    x, t = torch.randn(2, channels, 4, size, size), torch.randn(2, channels, 4, size, size)
    assert model.encoder.token_grid([x]) == (2, 4, 4)
    out = model([x], target_inputs=[t])
    (out["loss_recon"] + out["loss_recon_target"] + out["logits"].sum()).backward()
    assert model.encoder.patch_embed.proj.weight.grad is not None
    assert model.decoder.head.out_features == channels * 2 * patch * patch


def test_a_ratio_that_masks_no_token_is_refused():
    cfg = tiny_vit_cfg()
    cfg.MASK.RATIO = 0.05  # int(0.05 * 16) = 0 of the 4x4 positions
    with pytest.raises(ValueError, match="MASK.RATIO 0.05 masks none of the 16 spatial token positions"):
        build_model(cfg)([torch.randn(2, 3, 4, 32, 32)])
