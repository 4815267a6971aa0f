"""Config defaults, checked merging, PySlowFast yaml compatibility and the command-line parser."""
import glob
import os

import pytest

from ego_fsar.config import ConfigError, get_cfg, merge_file, merge_list
from ego_fsar.utils.parser import load_config, parse_args, save_config
from tests.paths import SHARED_DATA

PYSF = os.path.join(SHARED_DATA, "pyslowfast-configs")
PYSF_YAMLS = sorted(glob.glob(os.path.join(PYSF, "**", "*.yaml"), recursive=True))
DEFAULTS = os.path.join(os.path.dirname(__file__), "..", "..", "ego_fsar", "config", "defaults.py")


def test_pyslowfast_yamls_found():
    assert len(PYSF_YAMLS) == 7


@pytest.mark.parametrize("path", PYSF_YAMLS, ids=os.path.basename)
def test_pyslowfast_yaml_loads_unchanged(path):
    cfg = get_cfg()
    merge_file(cfg, path)
    assert cfg.MODEL.MODEL_NAME in ("SlowFast", "ResNet")
    assert isinstance(cfg.SOLVER.WEIGHT_DECAY, float)  # "1e-4" in yaml is decoded to a float


def test_every_key_has_a_comment():
    lines = open(DEFAULTS).read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("_C.") and "CfgNode()" not in line:
            assert lines[i - 1].startswith("#"), f"defaults.py:{i + 1} {line} has no comment above it"


def test_unknown_key_names_key_file_and_closest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(ConfigError) as err:
        merge_file(get_cfg(), str(path))
    msg = str(err.value)
    assert "SOLVER.BASE_LRR" in msg and str(path) in msg and "SOLVER.BASE_LR" in msg


def test_type_mismatch_names_key_and_both_types(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("TRAIN:\n  BATCH_SIZE: [1, 2]\n")
    with pytest.raises(ConfigError) as err:
        merge_file(get_cfg(), str(path))
    msg = str(err.value)
    assert "TRAIN.BATCH_SIZE" in msg and "int" in msg and "list" in msg and str(path) in msg


def test_group_given_a_value_is_rejected():
    with pytest.raises(ConfigError, match="SOLVER"):
        merge_list(get_cfg(), ["SOLVER", "1"])


def test_num_classes_int_or_list():
    cfg = get_cfg()
    merge_list(cfg, ["MODEL.NUM_CLASSES", "[97, 300]"])
    assert cfg.MODEL.NUM_CLASSES == [97, 300]
    merge_list(cfg, ["MODEL.NUM_CLASSES", "5"])
    assert cfg.MODEL.NUM_CLASSES == 5
    with pytest.raises(ConfigError, match="MODEL.NUM_CLASSES"):
        merge_list(cfg, ["MODEL.NUM_CLASSES", "'many'"])


def test_int_accepted_for_float():
    cfg = get_cfg()
    merge_list(cfg, ["SOLVER.BASE_LR", "1"])
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)


def test_odd_overrides_rejected():
    with pytest.raises(ConfigError, match="KEY VALUE"):
        merge_list(get_cfg(), ["SOLVER.BASE_LR"])


def test_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.5\n  MAX_EPOCH: 3\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_EPOCH: 7\n")
    cfg = get_cfg()
    merge_file(cfg, str(tmp_path / "child.yaml"))
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.SOLVER.MAX_EPOCH == 7


@pytest.mark.parametrize("argv_tail", [
    ["NUM_GPUS", "0", "SOLVER.BASE_LR", "0.25"],
    ["--opts", "NUM_GPUS", "0", "SOLVER.BASE_LR", "0.25"],
])
def test_parser_positional_and_opts_forms(argv_tail):
    path = os.path.join(PYSF, "Kinetics", "SLOW_8x8_R50.yaml")
    args = parse_args(["--cfg", path] + argv_tail)
    assert args.cfg_files == [path]
    cfg = load_config(args, path)
    assert cfg.NUM_GPUS == 0 and cfg.SOLVER.BASE_LR == 0.25 and cfg.DIST_BACKEND == "gloo"


def test_parser_shards_and_init_method():
    path = os.path.join(PYSF, "Kinetics", "SLOW_8x8_R50.yaml")
    args = parse_args(["--cfg", path, "--shard_id", "1", "--num_shards", "2", "--init_method",
                       "tcp://10.0.0.1:1234", "NUM_GPUS", "0", "NUM_CPU_PROCS", "2"])
    cfg = load_config(args, path)
    assert (cfg.SHARD_ID, cfg.NUM_SHARDS, cfg.INIT_METHOD) == (1, 2, "tcp://10.0.0.1:1234")


def test_batch_size_must_divide_world():
    args = parse_args(["--cfg", os.path.join(PYSF, "Kinetics", "SLOW_8x8_R50.yaml"),
                       "NUM_GPUS", "0", "NUM_CPU_PROCS", "3"])
    with pytest.raises(ValueError, match="TRAIN.BATCH_SIZE"):
        load_config(args)


def test_resolved_config_saved(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    cfg.SOLVER.BASE_LR = 0.123
    path = save_config(cfg)
    again = get_cfg()
    merge_file(again, path)
    assert again.SOLVER.BASE_LR == 0.123
