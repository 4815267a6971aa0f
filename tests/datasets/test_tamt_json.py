"""TAMT's JSON split files: split file names, absolute and relative video paths, class names,
errors, and a loader over stand-in videos."""
import json
import os

import pytest

from ego_fsar.config import get_cfg
from ego_fsar.config.merge import merge_file
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.epickitchens import AnnotationError
from ego_fsar.datasets.loader import construct_loader
from ego_fsar.datasets.tamt_json import read_tamt_json
from tests.datasets.stand_ins import stand_in_cfg, write_video
from tests.paths import REPO_ROOT


def _cfg(root):
    cfg = stand_in_cfg("TamtJson", root / "filelist", root / "rgb", batch_size=3)
    cfg.DATA.DECODING_BACKEND, cfg.DATA.TEMPORAL_SAMPLING = "decord", "segment"
    return cfg


def _write(path, record):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f)


@pytest.fixture
def diving(tmp_path):
    """Diving48-like files: novel.json with TAMT's absolute paths and global labels 7 and 15."""
    names = [str(tmp_path / "rgb" / f"v{i}.mp4") for i in range(3)]
    for i, name in enumerate(names):
        write_video(name, range(10 * i, 10 * i + 8))
    _write(str(tmp_path / "filelist" / "novel.json"), {"image_names": names, "image_labels": [7, 15, 7]})
    _write(str(tmp_path / "filelist" / "base.json"), {"image_names": ["v0.mp4", "v1.mp4"], "image_labels": [0, 2],
                                                      "label_names": ["back", "forward", "inward"]})
    return tmp_path, names


def test_novel_split_with_absolute_paths_loads_a_batch(diving):
    root, names = diving
    cfg = _cfg(root)
    ds = build_dataset("tamtjson", cfg, "test")
    assert ds.videos == names and ds.labels == [7, 15, 7]
    assert len(ds.class_names) == 16 and ds.class_names[7] == "7"
    batch = next(iter(construct_loader(cfg, "test")))
    assert batch["inputs"][0].shape == (3, 3, 4, 16, 16) and batch["label"].tolist() == [7, 15, 7]


def test_base_split_relative_paths_and_label_names(diving):
    root, _ = diving
    ds = build_dataset("TamtJson", _cfg(root), "train")
    assert ds.videos == [str(root / "rgb" / "v0.mp4"), str(root / "rgb" / "v1.mp4")]
    assert ds.class_names == ["back", "forward", "inward"]
    assert ds[1]["label"] == 2


def test_class_names_from_folders_without_label_names(tmp_path):
    path = str(tmp_path / "val.json")
    _write(path, {"image_names": ["/d/hmdb51_org/fencing/a.avi", "/d/hmdb51_org/golf/b.avi"], "image_labels": [1, 0]})
    names, labels, label_names = read_tamt_json(path)
    assert labels == [1, 0] and label_names is None
    cfg = _cfg(tmp_path)
    cfg.DATA.PATH_TO_DATA_DIR = str(tmp_path)
    assert build_dataset("TamtJson", cfg, "val").class_names == ["golf", "fencing"]


@pytest.mark.parametrize("record, message", [
    ({"image_names": ["a.mp4"]}, "'image_labels' must be a list as long as 'image_names' (1)"),
    ({"image_names": "a.mp4", "image_labels": [0]}, "'image_names' must be a list, got str"),
    ({"image_names": ["a.mp4", ""], "image_labels": [0, 1]}, "image_names[1] must be a non-empty string"),
    ({"image_names": ["a.mp4", "b.mp4"], "image_labels": [0, "1"]}, "image_labels[1] must be an integer >= 0"),
    ({"image_names": [], "image_labels": []}, "lists no videos"),
    ({"image_names": ["a.mp4"], "image_labels": [3], "label_names": ["x"]}, "label 3 has no entry in 'label_names'"),
])
def test_malformed_files_name_the_file_and_entry(tmp_path, record, message):
    path = str(tmp_path / "val.json")
    _write(path, record)
    with pytest.raises(AnnotationError) as err:
        read_tamt_json(path)
    assert path in str(err.value) and message in str(err.value)


def test_invalid_json_and_missing_file(tmp_path):
    (tmp_path / "val.json").write_text("{")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        read_tamt_json(str(tmp_path / "val.json"))
    with pytest.raises(FileNotFoundError, match="novel.json does not exist"):
        build_dataset("TamtJson", _cfg(tmp_path), "test")


def test_config_loads_and_names_the_dataset():
    cfg = get_cfg()
    merge_file(cfg, os.path.join(REPO_ROOT, "configs", "TAMT", "DIVING48_SLOWFAST_PROTONET_5WAY_5SHOT.yaml"))
    assert (cfg.TEST.DATASET, cfg.TEST.SPLIT, cfg.FEW_SHOT.QUERY) == ("TamtJson", "test", 12)
