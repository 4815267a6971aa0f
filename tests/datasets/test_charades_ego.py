"""Charades / Charades-Ego frame lists: parsing, multi-hot labels, errors, and a loader over stand-in
frames."""
import os

import numpy as np
import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.config.merge import merge_file
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.charades_ego import read_class_names, read_frame_list
from ego_fsar.datasets.epickitchens import AnnotationError
from ego_fsar.datasets.loader import construct_loader
from ego_fsar.datasets.sampling import sample_frame_indices
from tests.datasets.stand_ins import CHARADES_HEADER as HEADER
from tests.datasets.stand_ins import CHARADES_VIDEOS as VIDEOS
from tests.datasets.stand_ins import grey, greys_of, write_charades
from tests.paths import REPO_ROOT


@pytest.fixture
def charades(tmp_path):
    return write_charades(str(tmp_path))


def test_frame_list_groups_frames_by_video(charades):
    videos = read_frame_list(os.path.join(charades.DATA.PATH_TO_DATA_DIR, "train_1st.csv"), 157, "/rgb")
    assert [v.video_id for v in videos] == list(VIDEOS)
    assert videos[0].frames[2] == "/rgb/0A8ZT/0A8ZT-000003.jpg" and len(videos[2].frames) == 5
    assert videos[0].frame_labels[2] == [12, 97] and videos[0].labels == [3, 12, 97]
    assert [v.first_label for v in videos] == [12, -1, 150]


def test_train_batch_has_multi_hot_float_labels(charades):
    ds = build_dataset("CharadesEgo", charades, "train")
    assert ds.labels == [12, -1, 150] and ds.class_names[:2] == ["c000", "c001"] and len(ds.class_names) == 157
    batch = next(iter(construct_loader(charades, "train")))
    assert batch["inputs"][0].shape == (3, 3, 4, 16, 16)
    label = batch["label"][batch["index"].tolist().index(0)]
    assert label.dtype == torch.float32 and label.shape == (157,)
    assert torch.nonzero(label).flatten().tolist() == [3, 12, 97]
    assert batch["label"][batch["index"].tolist().index(1)].sum() == 0


def test_test_views_read_the_listed_frames(charades):
    ds = build_dataset("CharadesEgo", charades, "test")
    assert len(ds) == 3 * 2
    for view in (0, 1):
        expected = [grey(f) for f in sample_frame_indices(charades, 6, view, 2)]
        np.testing.assert_allclose(greys_of(ds.read_frames(0, view)), expected, atol=3)
    item = ds[5]
    assert item["index"] == 2 and item["meta"] == {"video_id": "E3F4G", "num_frames": 5, "clip_index": 2,
                                                     "temporal_index": 1, "spatial_index": 1, "skipped": 0}


def test_charades_split_files_and_class_names(charades):
    split = charades.DATA.PATH_TO_DATA_DIR
    os.rename(os.path.join(split, "test_1st.csv"), os.path.join(split, "val.csv"))
    with open(os.path.join(split, "Charades_v1_classes.txt"), "w") as f:
        f.write("".join(f"c{i:03d} Class number {i}\n" for i in range(157)))
    ds = build_dataset("Charades", charades, "test")
    assert ds.num_clips == 3 and ds.class_names[97] == "Class number 97"
    with pytest.raises(FileNotFoundError, match="train.csv does not exist"):
        build_dataset("Charades", charades, "train")


@pytest.mark.parametrize("line, message", [
    ("0A8ZT 0 1 0A8ZT/0A8ZT-000002.jpg", "expected 5 space-separated fields"),
    ('0A8ZT 0 1 0A8ZT/0A8ZT-000002.jpg "12;3"', "labels must be comma-separated class ids, got '12;3'"),
    ('0A8ZT 0 1 0A8ZT/0A8ZT-000002.jpg "157"', "class id 157 is not in 0..156"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "train.csv"
    path.write_text(f'{HEADER}\n0A8ZT 0 0 0A8ZT/0A8ZT-000001.jpg ""\n{line}\n')
    with pytest.raises(AnnotationError) as err:
        read_frame_list(str(path), 157)
    assert f"{path}, line 3" in str(err.value) and message in str(err.value)


def test_bad_header_and_class_files(tmp_path):
    (tmp_path / "train.csv").write_text('46GP8 0 0 46GP8/46GP8-000001.jpg ""\n')
    with pytest.raises(AnnotationError, match="line 1: expected the header"):
        read_frame_list(str(tmp_path / "train.csv"), 157)
    (tmp_path / "classes.txt").write_text("c000 Holding some clothes\nc002 Putting clothes somewhere\n")
    with pytest.raises(AnnotationError, match="line 2: expected `c001 <class name>`"):
        read_class_names(str(tmp_path / "classes.txt"))


def test_num_classes_must_be_one_int(charades):
    charades.MODEL.NUM_CLASSES = [157, 10]
    with pytest.raises(ValueError, match="needs an int MODEL.NUM_CLASSES"):
        build_dataset("CharadesEgo", charades, "train")


def test_config_is_multi_label_with_157_classes():
    cfg = get_cfg()
    merge_file(cfg, os.path.join(REPO_ROOT, "configs", "CharadesEgo", "SLOWFAST_8x8_R50.yaml"))
    assert (cfg.TRAIN.DATASET, cfg.MODEL.NUM_CLASSES, cfg.MODEL.LOSS_FUNC, cfg.DATA.MULTI_LABEL) == (
        "CharadesEgo", 157, "bce_logit", True)
