"""The few-shot benchmark splits: every shipped split file parsed, and a loader over stand-in videos
rendered for a few of the real rows."""
import filecmp
import glob
import os

import numpy as np
import pytest

from ego_fsar.config import get_cfg
from ego_fsar.config.merge import merge_file
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.epickitchens import AnnotationError
from ego_fsar.datasets.fsar_splits import read_few_shot_split
from ego_fsar.datasets.loader import construct_episode_loader, construct_loader
from ego_fsar.datasets.sampling import sample_frame_indices
from tests.datasets.stand_ins import greys_of, grey, stand_in_cfg, write_frame, write_video
from tests.paths import REPO_ROOT, requires_shared, shared_path

SPLITS = os.path.join(REPO_ROOT, "data", "splits")
# dataset: (classes, videos) of train, val, test
EXPECTED = {
    "ssv2_small": ((64, 12, 24), (6400, 1200, 2400)),
    "ssv2_full": ((64, 12, 24), (67013, 1926, 2857)),
    "kinetics100": ((64, 12, 24), (6400, 1200, 2400)),
    "ucf101": ((70, 10, 21), (9154, 1421, 2745)),
    "hmdb51": ((31, 10, 10), (4280, 1194, 1292)),
}


def _split_file(dataset, split):
    return os.path.join(SPLITS, dataset, f"{split}_few_shot.txt")


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_every_shipped_split_file_parses(dataset):
    classes, videos = EXPECTED[dataset]
    for split, num_classes, num_videos in zip(("train", "val", "test"), classes, videos):
        path = _split_file(dataset, split)
        with open(path) as f:
            assert sum(1 for line in f if line.strip()) == num_videos
        names, labels = read_few_shot_split(path, split)
        assert len(names) == num_videos and sorted(set(labels)) == list(range(num_classes))
        with_ids = dataset.startswith("ssv2")
        assert all(n.isdigit() for n in names) == with_ids
        assert all(os.path.splitext(n)[1] in (".avi", ".mp4", ".mkv") for n in names) != with_ids


@pytest.mark.parametrize("dataset", [pytest.param(d, marks=requires_shared(f"fsar-splits/{d}"))
                                     for d in sorted(EXPECTED)])
def test_shipped_files_are_the_published_ones(dataset):
    shared = shared_path(f"fsar-splits/{dataset}")
    for split in ("train", "val", "test"):
        assert filecmp.cmp(_split_file(dataset, split), os.path.join(shared, f"{split}_few_shot.txt"), shallow=False)


def _cfg(data_dir, prefix, backend):
    cfg = stand_in_cfg("FewShotSplit", data_dir, prefix)
    cfg.DATA.DECODING_BACKEND, cfg.DATA.TEMPORAL_SAMPLING = backend, "segment"
    return cfg


def _first_clips(dataset, split, num_classes, per_class):
    """The first `per_class` lines of each of the first `num_classes` classes of a real split file."""
    lines = open(_split_file(dataset, split)).read().splitlines()
    names, labels = read_few_shot_split(_split_file(dataset, split), split)
    picked = [i for c in range(num_classes) for i in [j for j, l in enumerate(labels) if l == c][:per_class]]
    return [lines[i] for i in picked], [names[i] for i in picked], [labels[i] for i in picked]


def test_hmdb51_videos_load_in_batches_and_episodes(tmp_path):
    lines, names, labels = _first_clips("hmdb51", "test", 3, 2)
    (tmp_path / "test_few_shot.txt").write_text("\n".join(lines) + "\n")
    for i, name in enumerate(names):
        write_video(str(tmp_path / "hmdb51" / name), range(10 * i, 10 * i + 12))
    cfg = _cfg(str(tmp_path), str(tmp_path / "hmdb51"), "decord")
    ds = build_dataset("FewShotSplit", cfg, "test")
    assert ds.labels == labels == [0, 0, 1, 1, 2, 2]
    assert ds.class_names == ["fencing", "kick", "kick_ball"]
    batch = next(iter(construct_loader(cfg, "test")))
    assert batch["inputs"][0].shape == (4, 3, 4, 16, 16) and batch["label"].tolist() == [0, 0, 1, 1]
    assert batch["meta"]["video"][1] == names[1]
    expected = [grey(10 + i) for i in sample_frame_indices(cfg, 12, 0, 1)]
    np.testing.assert_allclose(greys_of(ds.read_frames(1, 0)), expected, atol=4)
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY = 2, 1, 1
    episode = next(iter(construct_episode_loader(cfg, "test", ds, num_episodes=1)))
    assert episode["support"][0].shape == (2, 3, 4, 16, 16) and len(episode["class_names"]) == 2
    assert set(episode["class_names"]) <= {"fencing", "kick", "kick_ball"}


def test_ssv2_ids_read_as_frame_folders_or_videos_with_the_configured_extension(tmp_path):
    lines, names, labels = _first_clips("ssv2_small", "val", 2, 2)
    (tmp_path / "val_few_shot.txt").write_text("\n".join(lines) + "\n")
    for name in names:
        for n in range(1, 9):
            write_frame(str(tmp_path / "frames" / name / f"frame_{n:010d}.jpg"), n)
        write_video(str(tmp_path / "videos" / f"{name}.mp4"), range(1, 9))
    for backend, prefix, ext in (("frames", "frames", ".webm"), ("pyav", "videos", ".mp4")):
        cfg = _cfg(str(tmp_path), str(tmp_path / prefix), backend)
        cfg.DATA.VIDEO_EXT = ext
        ds = build_dataset("fewshotsplit", cfg, "val")
        assert ds.class_names == ["0", "1"] and ds.labels == labels
        expected = [grey(1 + i) for i in sample_frame_indices(cfg, 8, 0, 1)]
        np.testing.assert_allclose(greys_of(ds.read_frames(2, 0)), expected, atol=4)
        assert ds.video_path(2) == str(tmp_path / prefix / names[2]) + ("" if backend == "frames" else ".mp4")


@pytest.mark.parametrize("line, message", [
    ("test3//videos/fencing/a.avi", "belongs to split 'test', not 'val'"),
    ("val3", "expected `val<class>/<video id>` or `val<class>//<relative path>`"),
    ("val//videos/a.avi", "expected `val<class>/<video id>`"),
    ("val2//", "expected `val<class>/<video id>`"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "val_few_shot.txt"
    path.write_text(f"val0/1\n{line}\n")
    with pytest.raises(AnnotationError) as err:
        read_few_shot_split(str(path), "val")
    assert f"{path}, line 2" in str(err.value) and message in str(err.value)


def test_missing_split_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_few_shot.txt does not exist"):
        build_dataset("FewShotSplit", _cfg(str(tmp_path), "", "frames"), "train")


CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO_ROOT, "configs", "FewShotSplits", "*.yaml"))
                 if not p.endswith("_BASE.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_configs_read_their_shipped_splits(path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    cfg = get_cfg()
    merge_file(cfg, path)
    assert (cfg.MODEL.MODEL_NAME, cfg.MODEL.BACKBONE, cfg.HEAD.NAME) == ("FewShot", "SlowFast", "ProtoNet")
    ds = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    dataset = os.path.basename(cfg.DATA.PATH_TO_DATA_DIR)
    assert len(ds.class_names) == EXPECTED[dataset][0][2] and len(ds) == EXPECTED[dataset][1][2]
