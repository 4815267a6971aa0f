"""PySlowFast's Kinetics list files: parsing, errors, and a loader over stand-in videos."""
import os

import numpy as np
import pytest

from ego_fsar.config import get_cfg
from ego_fsar.config.merge import merge_file
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.epickitchens import AnnotationError
from ego_fsar.datasets.kinetics import read_path_label_list
from ego_fsar.datasets.loader import construct_loader
from ego_fsar.datasets.sampling import sample_frame_indices
from tests.datasets.stand_ins import greys_of, grey, write_video
from tests.paths import REPO_ROOT

VIDEOS = [("train_256/abseiling/a1.mp4", 0), ("train_256/abseiling/a2.mp4", 0),
          ("train_256/air drumming/b1.mp4", 1), ("train_256/zumba/c1.mp4", 2)]


def _cfg(root, separator=" "):
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX = str(root), str(root / "videos")
    cfg.DATA.PATH_LABEL_SEPARATOR, cfg.DATA.DECODING_BACKEND = separator, "pyav"
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 2, 10
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [24, 28], 16, 16
    cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = "slowfast", 3
    cfg.SLOWFAST.ALPHA = 2
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.TRAIN.BATCH_SIZE = cfg.TEST.BATCH_SIZE = 2
    return cfg


@pytest.fixture
def kinetics(tmp_path):
    for i, (name, _) in enumerate(VIDEOS):
        write_video(str(tmp_path / "videos" / name), range(20 * i, 20 * i + 16))
    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text("".join(f"{n} {label}\n" for n, label in VIDEOS))
    return tmp_path


def test_train_batches_and_folder_class_names(kinetics):
    cfg = _cfg(kinetics)
    ds = build_dataset("kinetics", cfg, "train")
    assert ds.labels == [0, 0, 1, 2] and ds.class_names == ["abseiling", "air drumming", "zumba"]
    batch = next(iter(construct_loader(cfg, "train")))
    slow, fast = batch["inputs"]
    assert fast.shape == (2, 3, 4, 16, 16) and slow.shape == (2, 3, 2, 16, 16)
    assert batch["meta"]["video"][0] in {n for n, _ in VIDEOS}


def test_test_split_has_every_view_of_the_whole_video(kinetics):
    cfg = _cfg(kinetics)
    ds = build_dataset("Kinetics", cfg, "test")
    assert len(ds) == 4 * 6 and ds.num_clips == 4
    assert ds.clip_source(2).num_frames == 16 and ds.clip_source(2).fps == pytest.approx(10)
    for view in (0, 1):
        expected = [grey(40 + i) for i in sample_frame_indices(cfg, 16, view, 2, 10.0)]
        np.testing.assert_allclose(greys_of(ds.read_frames(2, view)), expected, atol=4)
    item = ds[2 * 6 + 5]
    assert item["index"] == 2 and item["label"] == 1
    assert (item["meta"]["temporal_index"], item["meta"]["spatial_index"]) == (1, 2)


def test_frame_folder_backend_reads_the_folder_named_like_the_video(kinetics):
    cfg = _cfg(kinetics)
    cfg.DATA.DECODING_BACKEND = "frames"
    ds = build_dataset("Kinetics", cfg, "train")
    assert ds.video_path(0) == str(kinetics / "videos" / "train_256" / "abseiling" / "a1")


def test_separator_and_paths_containing_it(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("a b/c d.mp4\t3\nx.mp4\t0\n")
    assert read_path_label_list(str(path), "\t") == (["a b/c d.mp4", "x.mp4"], [3, 0])
    path.write_text("a b/c d.mp4 3\n")
    assert read_path_label_list(str(path), " ") == (["a b/c d.mp4"], [3])


@pytest.mark.parametrize("line, message", [
    ("clip.mp4", "expected `path label`"),
    ("clip.mp4 abseiling", "the label must be an integer, got 'abseiling'"),
    ("clip.mp4 -1", "the label must be >= 0"),
    (" 3", "expected `path label`"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "train.csv"
    path.write_text(f"ok.mp4 0\n\n{line}\n")
    with pytest.raises(AnnotationError) as err:
        read_path_label_list(str(path), " ")
    assert f"{path}, line 3" in str(err.value) and message in str(err.value)


def test_empty_and_missing_list_files(tmp_path):
    (tmp_path / "train.csv").write_text("\n")
    with pytest.raises(AnnotationError, match="lists no videos"):
        build_dataset("Kinetics", _cfg(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match="val.csv does not exist"):
        build_dataset("Kinetics", _cfg(tmp_path), "val")


def test_config_loads_and_names_the_dataset():
    cfg = get_cfg()
    merge_file(cfg, os.path.join(REPO_ROOT, "configs", "Kinetics", "SLOWFAST_8x8_R50.yaml"))
    assert (cfg.TRAIN.DATASET, cfg.TEST.DATASET, cfg.MODEL.MODEL_NAME) == ("Kinetics", "Kinetics", "SlowFast")
