"""Charades third-person videos as SUM-L's exo dataset: tags from the action mapping, narrations, config."""
import os
import shutil

import pytest

from ego_fsar.config import get_cfg
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.epickitchens import AnnotationError
from ego_fsar.datasets.exo_pairs import exo_cfg
from tests.datasets.stand_ins import write_charades


@pytest.fixture
def exo(tmp_path):
    """An EPIC-style ego config whose exo dataset is the stand-in Charades list (action c: noun c % 38,
    verb c % 33)."""
    charades = write_charades(str(tmp_path))
    split = charades.DATA.PATH_TO_DATA_DIR
    shutil.copyfile(os.path.join(split, "train_1st.csv"), os.path.join(split, "train.csv"))
    with open(os.path.join(split, "Charades_v1_mapping.txt"), "w") as f:
        f.writelines(f"c{c:03d} n{c % 38:03d} v{c % 33:03d}\n" for c in range(157))
    cfg = get_cfg()
    cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = "slow", [97, 300]
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 1
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE = [24, 28], 16
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX = "ego/annotations", "ego/frames"
    cfg.SUML.EXO_DATASET = "CharadesExo"
    cfg.SUML.EXO_PATH_TO_DATA_DIR, cfg.SUML.EXO_PATH_PREFIX = split, charades.DATA.PATH_PREFIX
    return cfg


def test_exo_cfg_reads_the_exo_folders_with_charades_classes(exo):
    read = exo_cfg(exo)
    assert read.DATA.PATH_TO_DATA_DIR == exo.SUML.EXO_PATH_TO_DATA_DIR and read.MODEL.NUM_CLASSES == 157
    assert exo.MODEL.NUM_CLASSES == [97, 300] and exo.DATA.PATH_TO_DATA_DIR == "ego/annotations"


def test_tags_narrations_and_counts(exo):
    data = build_dataset("CharadesExo", exo_cfg(exo), "train")
    assert data.exo_tags(0) == ((3, 12, 31), (3, 12, 21))  # actions 3, 12, 97
    assert data.exo_tags(1) == ((), ())
    assert data.narration(0) == "c003. c012. c097" and data.narration(1) == ""
    assert data.tag_counts == (33, 38)
    assert data[0]["inputs"][0].shape[0] == 3


def test_malformed_mapping_names_the_line(exo):
    with open(os.path.join(exo.SUML.EXO_PATH_TO_DATA_DIR, "Charades_v1_mapping.txt"), "a") as f:
        f.write("c157 x1 v1\n")
    with pytest.raises(AnnotationError, match="line 158"):
        build_dataset("CharadesExo", exo_cfg(exo), "train")
