"""Temporal sampling index maths (dense PySlowFast clips, TSN segments, multi-view positions)."""
import numpy as np
import pytest

from ego_fsar.config import get_cfg
from ego_fsar.datasets.sampling import get_start_end_idx, sample_frame_indices, segment_indices


def _cfg(sampling="dense", num_frames=4, rate=2, offset=False):
    cfg = get_cfg()
    cfg.DATA.TEMPORAL_SAMPLING = sampling
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.USE_OFFSET_SAMPLING = num_frames, rate, offset
    return cfg


def test_start_end_uniform_views():
    # delta = 100 - 20 = 80: PySlowFast places view i of 4 at 80 * i / 4
    starts = [get_start_end_idx(100, 20, i, 4)[0] for i in range(4)]
    assert starts == [0, 20, 40, 60]
    assert get_start_end_idx(100, 20, 3, 4)[1] == 79
    # with offset sampling the views span the first to the last start; one view is centred
    assert [get_start_end_idx(100, 20, i, 5, use_offset=True)[0] for i in range(5)] == [0, 20, 40, 60, 80]
    assert get_start_end_idx(100, 20, 0, 1, use_offset=True)[0] == 40


def test_random_start_stays_inside():
    rng = np.random.RandomState(0)
    for _ in range(50):
        start, end = get_start_end_idx(100, 20, -1, 1, rng=rng)
        assert 0 <= start <= 80 and end == pytest.approx(start + 19)


def test_dense_test_view_indices():
    # 4 frames, rate 2 -> clip of 8 frames; 2 views of a 24-frame clip start at 0 and 8
    cfg = _cfg()
    np.testing.assert_array_equal(sample_frame_indices(cfg, 24, 0, 2), [0, 2, 4, 7])
    np.testing.assert_array_equal(sample_frame_indices(cfg, 24, 1, 2), [8, 10, 12, 15])


def test_dense_fps_scaling_and_clamping():
    cfg = _cfg(rate=8)
    # a 60 fps video and TARGET_FPS 30: the clip spans 4 * 8 * 2 = 64 frames
    idx = sample_frame_indices(cfg, 64, 0, 1, fps=60.0)
    np.testing.assert_array_equal(idx, [0, 21, 42, 63])
    # a clip shorter than the span: indices clamp to the last frame
    np.testing.assert_array_equal(sample_frame_indices(cfg, 10, 0, 1), [0, 9, 9, 9])


def test_dense_random_training_clip():
    cfg, rng = _cfg(), np.random.RandomState(1)
    starts = set()
    for _ in range(30):
        idx = sample_frame_indices(cfg, 30, -1, 1, rng=rng)
        assert idx.min() >= 0 and idx.max() <= 29 and np.all(np.diff(idx) >= 2)
        starts.add(int(idx[0]))
    assert len(starts) > 5


def test_segment_test_is_centred_and_views_spread():
    np.testing.assert_array_equal(segment_indices(40, 4, 0, 1), [5, 15, 25, 35])
    np.testing.assert_array_equal(segment_indices(40, 4, 0, 2), [2, 12, 22, 32])
    np.testing.assert_array_equal(segment_indices(40, 4, 1, 2), [7, 17, 27, 37])
    # fewer frames than segments: indices repeat, in order, within the clip
    np.testing.assert_array_equal(segment_indices(3, 6, 0, 1), [0, 0, 1, 1, 2, 2])


def test_segment_training_one_random_frame_per_segment():
    rng = np.random.RandomState(0)
    seen = set()
    for _ in range(40):
        idx = segment_indices(40, 4, -1, 1, rng=rng)
        assert np.array_equal(idx // 10, np.arange(4))
        seen.add(tuple(idx))
    assert len(seen) > 10
    np.testing.assert_array_equal(segment_indices(3, 6, -1, 1, rng=rng), [0, 0, 1, 1, 2, 2])


def test_sampler_by_config_name():
    np.testing.assert_array_equal(sample_frame_indices(_cfg("segment"), 40, 0, 1), [5, 15, 25, 35])
    with pytest.raises(KeyError, match="DATA.TEMPORAL_SAMPLING must be one of"):
        sample_frame_indices(_cfg("tubelet"), 40, 0, 1)
    with pytest.raises(ValueError, match="0 frames"):
        sample_frame_indices(_cfg(), 0, 0, 1)
