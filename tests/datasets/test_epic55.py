"""EPIC-Kitchens-55 segments from TBN-style pickles and the official csv files, with stand-in frames
rendered for the segments a test reads."""
import os

import numpy as np
import pytest

from ego_fsar.config import get_cfg
from ego_fsar.config.merge import merge_file
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.epic55 import read_epic55_annotations
from ego_fsar.datasets.epickitchens import AnnotationError
from ego_fsar.datasets.loader import construct_loader
from ego_fsar.datasets.sampling import sample_frame_indices
from tests.datasets.stand_ins import greys_of, grey, write_frame
from tests.paths import REPO_ROOT

pandas = pytest.importorskip("pandas")

LABELLED = ["uid", "participant_id", "video_id", "narration", "start_timestamp", "stop_timestamp", "start_frame",
            "stop_frame", "verb", "verb_class", "noun", "noun_class", "all_nouns", "all_noun_classes"]
# Segments in EPIC-55's layout (the first rows of P01_01 in EPIC_train_action_labels.csv), made short.
ROWS = [
    [0, "P01", "P01_01", "open door", "00:00:00.14", "00:00:03.37", 8, 19, "open", 2, "door", 8, ["door"], [8]],
    [1, "P01", "P01_01", "turn on light", "00:00:04.37", "00:00:06.17", 262, 270, "turn-on", 12, "light", 113,
     ["light"], [113]],
    [2, "P01", "P01_01", "close door", "00:00:06.98", "00:00:09.49", 418, 429, "close", 3, "door", 8, ["door"], [8]],
    [3, "P02", "P02_03", "take plate", "00:00:10.00", "00:00:11.00", 30, 37, "take", 0, "plate", 2, ["plate"], [2]],
]
TIMESTAMPS = "uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame\n" \
             "1924,P01,P01_11,00:00:00.00,00:00:01.89,1,9\n1925,P01,P01_11,00:00:01.56,00:00:02.45,3,10\n"


def _tbn_pickle(path, rows):
    """A pickle laid out like TBN's train_val/*.pkl: uid index, object columns, extra frame counts."""
    frame = pandas.DataFrame(rows, columns=LABELLED, dtype=object).set_index("uid")
    frame["rgb_frame_count"] = [r[7] - r[6] if isinstance(r[7], int) else None for r in rows]
    frame.to_pickle(path)


@pytest.fixture
def epic55(tmp_path):
    ann, frames = tmp_path / "split", tmp_path / "frames"
    ann.mkdir()
    _tbn_pickle(ann / "EPIC_train_action_labels.pkl", ROWS)
    _tbn_pickle(ann / "EPIC_val_action_labels.pkl", ROWS[1:3])
    (ann / "EPIC_test_s1_timestamps.csv").write_text(TIMESTAMPS)
    (ann / "EPIC_video_info.csv").write_text("video,resolution,duration,fps\nP01_01,1920x1080,1652.1,60.0\n")
    for row in ROWS + [[0, "P01", "P01_11", "", "", "", 1, 10]]:
        for n in range(row[6], row[7] + 1):
            write_frame(str(frames / row[2] / f"frame_{n:010d}.jpg"), n)
    cfg = get_cfg()
    cfg.TRAIN.DATASET = cfg.TEST.DATASET = "Epic55"
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX = str(ann), str(frames)
    cfg.DATA.DECODING_BACKEND, cfg.DATA.TARGET_FPS = "frames", 60
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 2
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [24, 28], 16, 16
    cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = "slow", [125, 352]
    cfg.TEST.SPLIT = "test_s1"
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.TRAIN.BATCH_SIZE = cfg.TEST.BATCH_SIZE = 2
    return cfg


def test_tbn_pickle_batches_with_verb_and_noun_labels(epic55):
    ds = build_dataset("epic55", epic55, "train")
    assert [s.uid for s in ds.segments] == ["0", "1", "2", "3"] and ds.labels == [2, 12, 3, 0]
    assert ds.class_names[2] == "open" and ds.class_names[12] == "turn-on"
    batch = next(iter(construct_loader(epic55, "train")))
    assert batch["inputs"][0].shape == (2, 3, 4, 16, 16)
    assert set(batch["label"]) == {"verb", "noun"} and batch["label"]["verb"].shape == (2,)


def test_val_frames_are_the_sampled_ones_at_the_video_frame_rate(epic55):
    ds = build_dataset("Epic55", epic55, "val")
    assert [s.narration for s in ds.segments] == ["turn on light", "close door"]
    for clip, row in enumerate(ROWS[1:3]):
        source = ds.clip_source(clip)
        assert (source.path, source.start, source.num_frames, source.fps) == (
            os.path.join(epic55.DATA.PATH_PREFIX, "P01_01"), row[6] - 1, row[7] - row[6] + 1, 60.0)
        expected = row[6] + sample_frame_indices(epic55, source.num_frames, 0, 1, 60.0)
        np.testing.assert_allclose(greys_of(ds.read_frames(clip, 0)), [grey(n) for n in expected], atol=3)
    item = ds[1]
    assert item["label"] == {"verb": 3, "noun": 8} and item["meta"]["uid"] == "2"


def test_unlabelled_test_segments_have_class_minus_one(epic55):
    ds = build_dataset("Epic55", epic55, "test_s1")
    assert ds.labels == [-1, -1] and ds.class_names == []
    batch = next(iter(construct_loader(epic55, "test_s1")))
    assert batch["label"]["verb"].tolist() == [-1, -1] and batch["meta"]["uid"] == ["1924", "1925"]
    epic55.MODEL.NUM_CLASSES = 125
    assert build_dataset("Epic55", epic55, "test_s1")[0]["label"] == -1


def test_noun_labels_and_class_files(epic55, tmp_path):
    ann = epic55.DATA.PATH_TO_DATA_DIR
    with open(os.path.join(ann, "EPIC_noun_classes.csv"), "w") as f:
        f.write("noun_id,class_key,nouns\n" + "".join(f"{i},noun{i},\"['noun{i}']\"\n" for i in range(352)))
    epic55.MODEL.NUM_CLASSES, epic55.DATA.EPIC_LABEL = 352, "noun"
    ds = build_dataset("Epic55", epic55, "train")
    assert ds.labels == [8, 113, 8, 2] and len(ds.class_names) == 352 and ds.class_names[113] == "noun113"
    assert ds[1]["label"] == 113


def test_official_csv_layout(tmp_path):
    path = tmp_path / "EPIC_train_action_labels.csv"
    frame = pandas.DataFrame(ROWS, columns=LABELLED)
    frame.to_csv(path, index=False)
    segments = read_epic55_annotations(str(path))
    assert [(s.uid, s.start_frame, s.stop_frame, s.verb_class, s.noun_class) for s in segments] == [
        (str(r[0]), r[6], r[7], r[9], r[11]) for r in ROWS]


@pytest.mark.parametrize("row, message", [
    ("5,P01,P01_01,x,00:00:01.0,00:00:02.0,x93,147,put,1,plate,2,[],[]", "column 'start_frame' must be an integer"),
    ("5,P01,P01_01,x,00:00:01.0,00:00:02.0,93,47,put,1,plate,2,[],[]", "expected 1 <= start_frame <= stop_frame"),
    ("5,P01,,x,00:00:01.0,00:00:02.0,93,147,put,1,plate,2,[],[]", "missing value for column 'video_id'"),
    ("5,P01,P01_01,x,00:00:01.0,00:00:02.0,93,147,put,-1,plate,2,[],[]", "negative class id"),
    ("5,P01,P01_01,x", "expected 14 fields"),
])
def test_malformed_csv_row_names_file_and_line(tmp_path, row, message):
    path = tmp_path / "EPIC_val_action_labels.csv"
    path.write_text(",".join(LABELLED) + "\n4,P01,P01_01,x,00:00:01.0,00:00:02.0,8,9,put,1,plate,2,[],[]\n" + row + "\n")
    with pytest.raises(AnnotationError) as err:
        read_epic55_annotations(str(path))
    assert f"{path}, line 3" in str(err.value) and message in str(err.value)


def test_malformed_pickle_row_and_columns(tmp_path):
    bad = [list(r) for r in ROWS]
    bad[2][7] = "end"
    _tbn_pickle(tmp_path / "a.pkl", bad)
    with pytest.raises(AnnotationError, match=r"a.pkl, row 2 \(uid 2\): column 'stop_frame' must be an integer"):
        read_epic55_annotations(str(tmp_path / "a.pkl"))
    pandas.DataFrame(ROWS, columns=LABELLED).drop(columns=["noun_class"]).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(AnnotationError, match="labelled files need all of"):
        read_epic55_annotations(str(tmp_path / "b.csv"))
    pandas.DataFrame(ROWS, columns=LABELLED).drop(columns=["video_id"]).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(AnnotationError, match=r"missing columns \['video_id'\]"):
        read_epic55_annotations(str(tmp_path / "c.csv"))


def test_missing_split_names_the_files_tried(epic55):
    with pytest.raises(FileNotFoundError, match="tried EPIC_test_s2_action_labels.pkl, .*EPIC_test_s2_timestamps.csv"):
        build_dataset("Epic55", epic55, "test_s2")


def test_config_has_two_heads_and_the_tbn_splits():
    cfg = get_cfg()
    merge_file(cfg, os.path.join(REPO_ROOT, "configs", "EPIC-55", "SLOWFAST_8x8_R50.yaml"))
    assert (cfg.TRAIN.DATASET, cfg.MODEL.NUM_CLASSES, cfg.DATA.TRAIN_SPLIT, cfg.TEST.SPLIT) == (
        "Epic55", [125, 352], "train", "val")
