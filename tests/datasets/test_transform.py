"""Spatial transforms: shapes, PySlowFast crop positions, one crop/flip/colour change per clip."""
import numpy as np
import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.datasets import transform as T


def _cfg():
    cfg = get_cfg()
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [36, 48], 32, 40
    cfg.DATA.MEAN, cfg.DATA.STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    return cfg


def _moving_clip(t=4, h=30, w=50):
    """uint8 [T,H,W,3] where frame k is frame 0 plus 10 * k: any per-frame spatial difference shows."""
    base = torch.randint(0, 150, (1, h, w, 3), generator=torch.Generator().manual_seed(0))
    return (base + 10 * torch.arange(t).view(t, 1, 1, 1)).to(torch.uint8)


def test_short_side_scale_keeps_aspect():
    x = torch.rand(2, 3, 30, 50)
    assert T.short_side_scale(x, 60).shape == (2, 3, 60, 100)
    assert T.short_side_scale(x.transpose(2, 3), 60).shape == (2, 3, 100, 60)


def test_uniform_crop_positions():
    assert [T.uniform_crop_position(10, 16, 10, i) for i in range(3)] == [(0, 0), (0, 3), (0, 6)]
    # tall frames: crops move down the image
    assert [T.uniform_crop_position(16, 10, 10, i) for i in range(3)] == [(0, 0), (3, 0), (6, 0)]
    cfg = _cfg()
    cfg.DATA.TEST_CROP_SIZE = 10
    x = torch.arange(10 * 16).float().view(1, 1, 10, 16)
    assert [T.spatial_transform(x, T.sample_spatial_params(cfg, 10, 16, i))[0, 0, 0, 0].item()
            for i in range(3)] == [0, 3, 6]
    cfg.DATA.TRAIN_JITTER_SCALES = [8, 8]
    with pytest.raises(ValueError, match="cannot crop"):
        T.sample_spatial_params(cfg, 10, 16, -1)


@pytest.mark.parametrize("spatial_idx, size", [(-1, 32), (0, 40), (1, 40), (2, 40)])
def test_clip_transform_shapes_and_same_crop_for_all_frames(spatial_idx, size):
    cfg = _cfg()
    cfg.DATA.COLOR_JITTER = 0.0
    clip = _moving_clip()
    for seed in range(5):
        out = T.clip_transform(cfg, clip, spatial_idx, rng=np.random.RandomState(seed))
        assert out.shape == (3, 4, size, size) and out.dtype == torch.float32
        # frame k = frame 0 + 10 / 255 / std * k everywhere (away from clamping): one crop for all
        diff = (out[:, 1:] - out[:, :-1]) * 0.25 * 255
        torch.testing.assert_close(diff, torch.full_like(diff, 10.0), atol=1e-3, rtol=0)


def test_flip_and_crop_are_random_at_training_only():
    cfg = _cfg()
    clip = _moving_clip()
    train = {T.clip_transform(cfg, clip, -1, rng=np.random.RandomState(s)).sum().item() for s in range(8)}
    test = {T.clip_transform(cfg, clip, 1, rng=np.random.RandomState(s)).sum().item() for s in range(8)}
    assert len(train) > 1 and len(test) == 1


def test_normalize_in_unit_range_and_bgr():
    cfg = _cfg()
    clip = torch.full((2, 40, 40, 3), 255, dtype=torch.uint8)
    torch.testing.assert_close(T.clip_transform(cfg, clip, 1), torch.full((3, 2, 40, 40), 2.0))
    cfg.DATA.REVERSE_INPUT_CHANNEL = True
    rgb = torch.tensor([0, 51, 102], dtype=torch.uint8).expand(2, 40, 40, 3)
    assert T.clip_transform(cfg, rgb, 1)[:, 0, 0, 0].tolist() == pytest.approx([-0.4, -1.2, -2.0])


def test_color_jitter_is_one_change_for_the_clip():
    frames = torch.rand(1, 3, 8, 8).repeat(4, 1, 1, 1)
    out = T.color_jitter(frames, 0.4, rng=np.random.RandomState(0))
    assert not torch.allclose(out, frames)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, out[:1].expand_as(out))


def test_clip_transform_rejects_float_frames():
    with pytest.raises(ValueError, match="uint8"):
        T.clip_transform(_cfg(), torch.rand(2, 8, 8, 3), 1)


def test_test_no_crop_resizes_the_whole_frame_for_every_view():
    cfg = _cfg()
    cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_NO_CROP = 8, True
    x = torch.rand(2, 3, 12, 20)
    whole = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
    for spatial_idx in range(3):
        params = T.sample_spatial_params(cfg, 12, 20, spatial_idx)
        assert params.box == (0.0, 0.0, 1.0, 1.0)
        torch.testing.assert_close(T.spatial_transform(x, params), whole, atol=1e-5, rtol=0)
    # another resolution (e.g. pose heatmaps) is resized whole to its own size
    torch.testing.assert_close(T.spatial_transform(x, params, size=4),
                               torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False),
                               atol=1e-5, rtol=0)
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE = [12, 12], 8
    assert not T.sample_spatial_params(cfg, 12, 20, -1).whole  # training keeps its crops
    cfg.DATA.TEST_NO_CROP = False
    assert T.sample_spatial_params(cfg, 12, 20, 1).box != (0.0, 0.0, 1.0, 1.0)
