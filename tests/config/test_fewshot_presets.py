"""configs/FewShot: the published test protocols as config fragments."""
import os

import pytest
import yaml

from ego_fsar.config import get_cfg, merge_file
from ego_fsar.utils.parser import load_config, parse_args
from tests.paths import REPO_ROOT

PRESETS = os.path.join(REPO_ROOT, "configs", "FewShot")
DEMO = os.path.join(REPO_ROOT, "configs", "EgoToy", "SLOWFAST_DEMO.yaml")

# preset -> (way, shot, query, test episodes, other keys it sets)
EXPECTED = {
    "CLIPFSAR_TRX_5W1S.yaml": (5, 1, 1, 10_000, {("HEAD", "OTAM_LAMBDA"): 0.5, ("FEW_SHOT", "TRAIN_QUERY"): 5}),
    "CLIPFSAR_TRX_5W5S.yaml": (5, 5, 1, 10_000, {("HEAD", "OTAM_LAMBDA"): 0.5, ("FEW_SHOT", "TRAIN_QUERY"): 5}),
    "MMCDFSL_5W1S.yaml": (5, 1, 15, 600, {("HEAD", "NAME"): "LogReg"}),
    "MMCDFSL_5W5S.yaml": (5, 5, 15, 600, {("HEAD", "NAME"): "LogReg"}),
    "TAMT_5W1S.yaml": (5, 1, 12, 2_000, {("FEW_SHOT", "SEED"): 0}),
    "TAMT_5W5S.yaml": (5, 5, 12, 2_000, {("FEW_SHOT", "SEED"): 0}),
}
# Complete experiments beside the fragments, checked where their dataset is tested.
EXPERIMENTS = {"FOLDER_5W5S.yaml"}  # tests/datasets/test_video_folder.py


def test_every_preset_is_checked():
    assert sorted(f for f in os.listdir(PRESETS) if f.endswith(".yaml") and f not in EXPERIMENTS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_values(name):
    path = os.path.join(PRESETS, name)
    cfg = get_cfg()
    merge_file(cfg, path)
    way, shot, query, episodes, others = EXPECTED[name]
    assert (cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, cfg.FEW_SHOT.TEST_EPISODES) == \
        (way, shot, query, episodes)
    for (group, key), value in others.items():
        assert cfg[group][key] == value
    with open(path) as f:
        text = f.read()
    assert text.startswith("# Test protocol of")  # documented in a header comment
    set_keys = {(group, key) for group, keys in yaml.safe_load(text).items() for key in keys}
    assert set_keys == {("FEW_SHOT", k) for k in ("WAY", "SHOT", "QUERY", "TEST_EPISODES")} | set(others)


def test_preset_as_base_and_as_second_file(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"_BASE_: {os.path.join(PRESETS, 'MMCDFSL_5W5S.yaml')}\nFEW_SHOT:\n  SHOT: 3\n")
    cfg = get_cfg()
    merge_file(cfg, str(child))
    assert (cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, cfg.HEAD.NAME) == (3, 15, "LogReg")

    cfg = load_config(parse_args(["--cfg", DEMO, os.path.join(PRESETS, "TAMT_5W1S.yaml"), "FEW_SHOT.SEED", "4"]))
    assert (cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, cfg.FEW_SHOT.TEST_EPISODES, cfg.FEW_SHOT.SEED) == (1, 12, 2000, 4)
    assert (cfg.TRAIN.DATASET, cfg.HEAD.NAME) == ("EgoToy", "ProtoNet")  # the demo's other keys stay
