"""The EPIC-Kitchens-100 reader on real validation annotations (the first 300 rows, committed in
tests/fixtures; all 9,668 when the shared data folder is present), with stand-in frames rendered only
for the few segments a test reads."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ego_fsar.config import get_cfg
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.epickitchens import (EPIC_COLUMNS, AnnotationError, read_class_names,
                                            read_epic_annotations)
from ego_fsar.datasets.sampling import sample_frame_indices
from tests.paths import EPIC_ROWS, requires_shared, shared_path

EPIC = EPIC_ROWS  # header and the first 300 segments of EPIC_100_validation.csv, the class files
VAL_CSV = os.path.join(EPIC, "EPIC_100_validation.csv")
SHARED_EPIC = "epic-kitchens-100-annotations"


@pytest.mark.parametrize("folder, rows", [
    (EPIC, 300),
    pytest.param(shared_path(SHARED_EPIC), 9668, marks=requires_shared(f"{SHARED_EPIC}/EPIC_100_validation.csv")),
], ids=["fixture", "shared"])
def test_parses_every_row_of_the_real_validation_file(folder, rows):
    segments = read_epic_annotations(os.path.join(folder, "EPIC_100_validation.csv"))
    assert len(segments) == rows
    first = segments[0]
    assert (first.narration_id, first.video_id, first.start_frame, first.stop_frame, first.verb_class,
            first.noun_class, first.narration) == ("P01_11_0", "P01_11", 1, 113, 0, 2, "take plate")
    assert all(s.num_frames >= 1 for s in segments)
    verbs = read_class_names(os.path.join(folder, "EPIC_100_verb_classes.csv"))
    nouns = read_class_names(os.path.join(folder, "EPIC_100_noun_classes.csv"))
    assert len(verbs) == 97 and len(nouns) == 300 and verbs[:2] == ["take", "put"]
    assert max(s.verb_class for s in segments) < 97 and max(s.noun_class for s in segments) < 300
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.DECODING_BACKEND = folder, "frames"
    ds = build_dataset("epickitchens", cfg, "val")
    assert len(ds) == rows and ds.labels == [s.verb_class for s in segments] and ds.class_names == verbs


def _copy_with_line(tmp_path, line_no, new_line):
    lines = open(VAL_CSV).read().splitlines()[:6]
    lines[line_no - 1] = new_line
    path = tmp_path / "EPIC_100_validation.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("line, message", [
    ("P01_11_1,P01,P01_11,00:00:01.700,00:00:01.56,00:00:02.45,x93,147,put down plate,put-down,1,plate,2,['plate'],[2]",
     "line 3: column 'start_frame' must be an integer, got 'x93'"),
    ("P01_11_1,P01,P01_11,00:00:01.700,00:00:01.56,00:00:02.45,93,47,put down plate,put-down,1,plate,2,['plate'],[2]",
     "line 3: expected 1 <= start_frame <= stop_frame, got 93..47"),
    ("P01_11_1,P01,,00:00:01.700,00:00:01.56,00:00:02.45,93,147,put down plate,put-down,1,plate,2,['plate'],[2]",
     "line 3: missing value for column 'video_id'"),
    ("P01_11_1,P01,P01_11,00:00:01.700", "line 3: expected 15 fields"),
])
def test_malformed_row_names_file_and_line(tmp_path, line, message):
    path = _copy_with_line(tmp_path, 3, line)
    with pytest.raises(AnnotationError) as err:
        read_epic_annotations(path)
    assert path in str(err.value) and message in str(err.value)


def test_missing_column_is_named(tmp_path):
    path = _copy_with_line(tmp_path, 1, ",".join(c for c in EPIC_COLUMNS if c != "verb_class"))
    with pytest.raises(AnnotationError, match="missing columns \\['verb_class'\\]"):
        read_epic_annotations(path)


def test_pickle_annotations_read_like_the_csv(tmp_path):
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(VAL_CSV, nrows=50).set_index("narration_id")
    frame.to_pickle(tmp_path / "EPIC_100_validation.pkl")
    assert read_epic_annotations(str(tmp_path / "EPIC_100_validation.pkl")) == read_epic_annotations(VAL_CSV)[:50]


# ------------------------------------------------------------------------------------------------ #
# End to end: the dataset on the real file, frames rendered for three short segments only.
# ------------------------------------------------------------------------------------------------ #
def _grey(frame: int) -> int:
    return (frame * 7) % 256


@pytest.fixture(scope="module")
def epic(tmp_path_factory):
    """(cfg, picked segment indices) with annotations copied and stand-in JPEGs for the picked rows."""
    root = tmp_path_factory.mktemp("epic")
    annotations = root / "annotations"
    annotations.mkdir()
    for name in ("EPIC_100_validation.csv", "EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv",
                 "EPIC_100_video_info.csv"):
        shutil.copy(os.path.join(EPIC, name), annotations / name)
    segments = read_epic_annotations(VAL_CSV)
    picked = [i for i in np.argsort([s.num_frames for s in segments], kind="stable")
              if segments[i].verb_class > 0][:3]
    for i in picked:
        s = segments[i]
        folder = root / "frames" / s.participant_id / "rgb_frames" / s.video_id
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(s.start_frame, s.stop_frame + 1):
            Image.new("RGB", (24, 16), (_grey(f),) * 3).save(folder / f"frame_{f:010d}.jpg", quality=95)
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX = str(annotations), str(root / "frames")
    cfg.DATA.DECODING_BACKEND = "frames"
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 2
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [16, 20], 16, 16
    cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = "slow", 97
    cfg.TEST.SPLIT = "validation"
    return cfg, [int(i) for i in picked], segments


def test_items_labels_and_class_names(epic):
    cfg, picked, segments = epic
    ds = build_dataset("EpicKitchens", cfg, "val")
    assert len(ds) == len(ds.labels) == len(segments) == 300 and len(ds.class_names) == 97
    verbs = read_class_names(os.path.join(EPIC, "EPIC_100_verb_classes.csv"))
    for i in picked:
        item = ds[i]
        s = segments[i]
        assert item["index"] == i and item["label"] == s.verb_class
        assert item["inputs"][0].shape == (3, 4, 16, 16)
        assert ds.class_names[item["label"]] == verbs[s.verb_class]
        assert item["meta"]["narration_id"] == s.narration_id and item["meta"]["skipped"] == 0


def test_decoded_frames_are_the_sampled_ones(epic):
    cfg, picked, segments = epic
    ds = build_dataset("EpicKitchens", cfg, "val")
    fps = {row.split(",")[0]: float(row.split(",")[2])
           for row in open(os.path.join(EPIC, "EPIC_100_video_info.csv")).read().splitlines()[1:]}
    for i in picked:
        s = segments[i]
        expected = s.start_frame + sample_frame_indices(cfg, s.num_frames, 0, 1, fps[s.video_id])
        grey = ds.read_frames(i, 0)[:, 8, 12, 0].astype(int)
        np.testing.assert_allclose(grey, [_grey(f) for f in expected], atol=2)


def test_two_heads_and_noun_labels(epic):
    cfg, picked, segments = epic
    cfg = cfg.clone()
    cfg.MODEL.NUM_CLASSES = [97, 300]
    item = build_dataset("epickitchens", cfg, "val")[picked[0]]
    s = segments[picked[0]]
    assert item["label"] == {"verb": s.verb_class, "noun": s.noun_class}
    cfg.MODEL.NUM_CLASSES, cfg.DATA.EPIC_LABEL = 300, "noun"
    ds = build_dataset("epickitchens", cfg, "val")
    assert ds.labels[picked[0]] == s.noun_class and len(ds.class_names) == 300
    assert ds[picked[0]]["label"] == s.noun_class


def test_multi_view_test_split(epic):
    cfg, picked, _ = epic
    cfg = cfg.clone()
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    ds = build_dataset("epickitchens", cfg, "validation")
    assert len(ds) == 300 * 6 and len(ds.labels) == 300
    views = [ds[picked[1] * 6 + v] for v in range(6)]
    assert {v["index"] for v in views} == {picked[1]}
    assert [(v["meta"]["temporal_index"], v["meta"]["spatial_index"]) for v in views] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_missing_split_file_is_named(epic):
    cfg, _, _ = epic
    with pytest.raises(FileNotFoundError, match="EPIC_100_train.csv nor .*EPIC_100_train.pkl"):
        build_dataset("epickitchens", cfg, "train")


def test_class_names_from_the_annotations_without_class_files(tmp_path):
    lines = open(VAL_CSV).read().splitlines()[:30]
    (tmp_path / "EPIC_100_validation.csv").write_text("\n".join(lines) + "\n")
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.DECODING_BACKEND = str(tmp_path), "frames"
    ds = build_dataset("epickitchens", cfg, "val")
    segments = read_epic_annotations(VAL_CSV)[:29]
    assert len(ds.class_names) == max(s.verb_class for s in segments) + 1
    assert all(ds.class_names[s.verb_class] in {t.verb for t in segments if t.verb_class == s.verb_class}
               for s in segments)
