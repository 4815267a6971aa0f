"""ego_fsar.utils.video_writer: scaling, captions, MP4 and GIF writing."""
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from ego_fsar.utils.video_writer import caption_frames, fit_frames, write_gif, write_mp4


def _frames(t=6, h=36, w=50):
    """Random 8x8 blocks of colour (what yuv420p keeps)."""
    blocks = np.random.default_rng(0).integers(40, 200, (t, h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, 1), 8, 2)[:, :h, :w]


def test_fit_frames_scales_the_longest_side():
    frames = _frames()
    assert fit_frames(frames, 25).shape == (6, 18, 25, 3)
    assert fit_frames(frames, 50) is frames and fit_frames(frames, 0) is frames
    flat = np.full((2, 40, 60, 3), 77, np.uint8)
    np.testing.assert_array_equal(fit_frames(flat, 30), np.full((2, 20, 30, 3), 77, np.uint8))


def test_caption_is_drawn_in_a_band_at_the_top():
    frames = _frames(h=120, w=160)
    out = caption_frames(frames, "bunny 87.5%")
    changed = (out != frames).any(axis=(0, 2, 3))
    band = int(changed.nonzero()[0].max()) + 1
    assert changed[:band].all() and 10 <= band <= 30  # font ~ 1/12 of the height plus padding
    np.testing.assert_array_equal(out[:, band:], frames[:, band:])
    assert out[:, :band].max() > 240  # white (antialiased) text on the darkened band
    assert out[:, :band].mean() < frames[:, :band].mean()
    # A caption wider than the frame shrinks to the smallest font rather than growing the band.
    long = caption_frames(frames, "a much longer class name than fits " * 3)
    assert not (long != frames).any(axis=(0, 2, 3))[band:].any()


@pytest.mark.parametrize("fps", [25, 30000 / 1001])
def test_mp4_round_trip_crops_odd_sizes(tmp_path, fps):
    frames = _frames(t=5, h=36, w=50)[:, :35, :49]
    path = str(tmp_path / "v.mp4")
    write_mp4(path, iter(frames), fps)
    with av.open(path) as container:
        stream = container.streams.video[0]
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        assert Fraction(stream.average_rate) == Fraction(fps).limit_denominator(1001)
    assert decoded.shape == (5, 34, 48, 3)
    assert np.abs(decoded.astype(int) - frames[:, :34, :48]).mean() < 8


def test_gif_round_trip(tmp_path):
    frames = _frames(t=4)
    path = str(tmp_path / "v.gif")
    write_gif(path, frames, fps=20)
    gif = Image.open(path)
    assert gif.n_frames == 4 and gif.size == (50, 36) and gif.info["duration"] == 50 and gif.info["loop"] == 0
    gif.seek(2)
    assert np.abs(np.asarray(gif.convert("RGB")).astype(int) - frames[2]).mean() < 8


def test_writers_need_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(str(tmp_path / "v.mp4"), [], 25)
    with pytest.raises(ValueError, match="no frames"):
        write_gif(str(tmp_path / "v.gif"), [], 25)
