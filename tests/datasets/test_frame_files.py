"""Per-frame flow and .npy readers: decoding, RGB-to-file frame mapping, repeating the last file, errors."""
import os

import numpy as np
import pytest
from PIL import Image

from ego_fsar.datasets.egotoy_writer import FLOW_BOUND, _flow_to_uint8
from ego_fsar.datasets.frame_files import FlowJpegFrames, NpyFrames
from ego_fsar.datasets.utils import DecodeError

TEMPLATE = "frame_{:010d}.jpg"


def _write_flow(folder, flows):
    """flows [N,H,W,2] in pixels as u/v JPEGs coded as EgoToy (and EPIC) code them."""
    coded = _flow_to_uint8(np.asarray(flows, np.float32))
    for axis, name in enumerate("uv"):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for n, plane in enumerate(coded[..., axis], start=1):
            Image.fromarray(plane).save(os.path.join(folder, name, TEMPLATE.format(n)), quality=95)


def test_flow_jpegs_decode_to_pixels(tmp_path):
    flows = np.zeros((3, 8, 8, 2), np.float32)
    flows[..., 0] = np.array([5.0, -3.0, 0.0])[:, None, None]
    flows[..., 1] = np.array([-12.5, 7.0, 19.0])[:, None, None]
    _write_flow(str(tmp_path), flows)
    read = FlowJpegFrames(str(tmp_path), TEMPLATE, bound=FLOW_BOUND).read([0, 1, 2])
    assert read.shape == (3, 8, 8, 2) and read.dtype == np.float32
    np.testing.assert_allclose(read, flows, atol=FLOW_BOUND / 127.5)  # one grey level


def test_stride_two_maps_rgb_frames_to_half_rate_flow(tmp_path):
    flows = np.arange(1, 5, dtype=np.float32)[:, None, None, None] * np.ones((4, 4, 4, 2), np.float32)
    _write_flow(str(tmp_path), flows)  # flow file n holds n pixels
    frames = FlowJpegFrames(str(tmp_path), TEMPLATE, stride=2)
    # RGB frame numbers 1..8 -> flow numbers ceil(n / 2), as EPIC's C1 code maps 2018 videos
    assert frames.numbers(range(8)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    np.testing.assert_allclose(frames.read([0, 3, 6])[:, 0, 0, 0], [1, 2, 4], atol=0.2)


def test_missing_files_raise_or_repeat_the_last(tmp_path):
    _write_flow(str(tmp_path), np.zeros((3, 4, 4, 2)))
    with pytest.raises(DecodeError) as err:
        FlowJpegFrames(str(tmp_path), TEMPLATE).read([1, 3])
    assert err.value.path == os.path.join(str(tmp_path), "u", TEMPLATE.format(4))
    assert FlowJpegFrames(str(tmp_path), TEMPLATE, repeat_last=True).numbers([1, 3, 5]).tolist() == [2, 3, 3]
    with pytest.raises(DecodeError):
        FlowJpegFrames(str(tmp_path / "absent"), TEMPLATE, repeat_last=True).read([0])


def test_npy_frames_keep_floats_scale_uint8_and_check_channels(tmp_path):
    np.save(tmp_path / "000001.npy", np.full((6, 5, 2), -4.5, np.float32))
    np.save(tmp_path / "000002.npy", np.full((6, 5, 2), 255, np.uint8))
    read = NpyFrames(str(tmp_path), "{:06d}.npy", channels=2).read([0, 1, 1])
    assert read.shape == (3, 6, 5, 2) and read[:, 0, 0, 0].tolist() == [-4.5, 1.0, 1.0]
    with pytest.raises(DecodeError, match=r"expected an array \[H,W,21\], got shape \(6, 5, 2\)"):
        NpyFrames(str(tmp_path), "{:06d}.npy", channels=21).read([0])
