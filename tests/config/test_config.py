"""Config defaults, checked merging, PySlowFast yaml compatibility and the command-line parser."""
import glob
import os
import pickle

import pytest
from fvcore.common.config import CfgNode as FvcoreCfgNode

from ego_fsar.config import CfgNode, ConfigError, assert_and_infer_cfg, get_cfg, merge_file, merge_list
from ego_fsar.config.merge import NULLABLE_KEYS
from ego_fsar.utils.parser import load_config, parse_args, save_config
from tests.paths import PYSLOWFAST_CONFIGS as PYSF

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


def _yaml(tmp_path, text: str, name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_none_rejected_unless_nullable(tmp_path):
    with pytest.raises(ConfigError) as err:
        merge_list(get_cfg(), ["SOLVER.BASE_LR", "None"])
    assert "SOLVER.BASE_LR" in str(err.value) and "command line" in str(err.value) and "float" in str(err.value)
    path = _yaml(tmp_path, "TRAIN:\n  BATCH_SIZE: null\n")
    with pytest.raises(ConfigError) as err:
        merge_file(get_cfg(), path)
    assert "TRAIN.BATCH_SIZE" in str(err.value) and path in str(err.value) and "int" in str(err.value)
    with pytest.raises(ConfigError, match="MODEL.NUM_CLASSES"):
        merge_list(get_cfg(), ["MODEL.NUM_CLASSES", "None"])


def test_nullable_keys_take_none_or_their_type():
    cfg = get_cfg()
    merge_list(cfg, ["SOLVER.CLIP_GRAD_L2NORM", "1", "SOLVER.WARMUP_FACTOR", "0.5"])
    assert cfg.SOLVER.CLIP_GRAD_L2NORM == 1.0 and isinstance(cfg.SOLVER.CLIP_GRAD_L2NORM, float)
    merge_list(cfg, ["SOLVER.CLIP_GRAD_L2NORM", "None"])
    assert cfg.SOLVER.CLIP_GRAD_L2NORM is None
    with pytest.raises(ConfigError, match=r"SOLVER.CLIP_GRAD_VAL: expected float or None"):
        merge_list(cfg, ["SOLVER.CLIP_GRAD_VAL", "'big'"])


def test_nullable_declarations_match_the_defaults():
    cfg = get_cfg()
    defaults = {key: cfg[key.split(".")[0]][key.split(".")[1]] for key in NULLABLE_KEYS}  # KeyError: stale
    undeclared = [f"{group}.{key}" for group, node in cfg.items() if isinstance(node, CfgNode)
                  for key, value in node.items() if value is None and f"{group}.{key}" not in NULLABLE_KEYS]
    assert not undeclared, f"keys with default None must declare their type in NULLABLE_KEYS: {undeclared}"
    assert all(v is None or isinstance(v, NULLABLE_KEYS[k]) for k, v in defaults.items())


def test_config_class_is_a_checked_cfgnode(tmp_path):
    cfg = get_cfg()
    assert isinstance(cfg, CfgNode) and isinstance(cfg, FvcoreCfgNode)
    assert all(isinstance(node, CfgNode) for node in cfg.values() if isinstance(node, FvcoreCfgNode))
    # The yacs methods accept what load_config accepts ...
    cfg.merge_from_file(_yaml(tmp_path, "MODEL:\n  NUM_CLASSES: [97, 300]\nSOLVER:\n  WEIGHT_DECAY: 1e-5\n"))
    assert cfg.MODEL.NUM_CLASSES == [97, 300] and cfg.SOLVER.WEIGHT_DECAY == 1e-5
    cfg.merge_from_list(["MODEL.NUM_CLASSES", "[3, 4]", "SOLVER.BASE_LR", "1"])
    assert cfg.MODEL.NUM_CLASSES == [3, 4] and cfg.SOLVER.BASE_LR == 1.0
    other = get_cfg()
    other.MODEL.NUM_CLASSES = [5, 6]
    cfg.merge_from_other_cfg(other)
    assert cfg.MODEL.NUM_CLASSES == [5, 6]
    # ... and reject what it rejects, naming the source and the closest keys.
    with pytest.raises(ConfigError, match=r"overrides: unknown config key SOLVER.BASE_LRR; closest valid keys: "
                                          r"SOLVER.BASE_LR"):
        cfg.merge_from_list(["SOLVER.BASE_LRR", "1"])
    bad = _yaml(tmp_path, "SOLVER:\n  MAX_EPOCH: 1.5\n", "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: type mismatch for SOLVER.MAX_EPOCH"):
        cfg.merge_from_file(bad)
    with pytest.raises(ConfigError, match="SOLVER.BASE_LR cannot be None"):
        cfg.merge_from_list(["SOLVER.BASE_LR", "None"])


def test_config_class_base_inheritance(tmp_path):
    _yaml(tmp_path, "MODEL:\n  NUM_CLASSES: [97, 300]\n", "base.yaml")
    cfg = get_cfg()
    cfg.merge_from_file(_yaml(tmp_path, "_BASE_: base.yaml\nSOLVER:\n  MAX_EPOCH: 7\n"))
    assert cfg.MODEL.NUM_CLASSES == [97, 300] and cfg.SOLVER.MAX_EPOCH == 7


def test_config_class_clone_dump_pickle_freeze(tmp_path):
    cfg = get_cfg()
    cfg.MODEL.NUM_CLASSES = [97, 300]
    clone = cfg.clone()
    assert clone == cfg and type(clone.SOLVER) is CfgNode
    again = get_cfg()
    again.merge_from_file(_yaml(tmp_path, cfg.dump()))  # None defaults are dumped as null
    assert again == cfg
    cfg.freeze()
    restored = pickle.loads(pickle.dumps(cfg))  # what mp.spawn does to pass cfg to its children
    assert restored == cfg and type(restored.SOLVER) is CfgNode and restored.is_frozen()
    with pytest.raises(AttributeError, match="immutable"):
        cfg.merge_from_list(["SOLVER.BASE_LR", "0.5"])
    assert cfg.SOLVER.BASE_LR == get_cfg().SOLVER.BASE_LR


def test_load_config_equals_the_yacs_methods(tmp_path):
    path = _yaml(tmp_path, "MODEL:\n  NUM_CLASSES: [97, 300]\n")
    opts = ["NUM_GPUS", "0", "SOLVER.BASE_LR", "0.5"]
    loaded = load_config(parse_args(["--cfg", path] + opts))
    direct = get_cfg()
    direct.merge_from_file(path)
    direct.merge_from_list(opts)
    direct.INIT_METHOD = loaded.INIT_METHOD  # set from --init_method by load_config
    assert loaded == assert_and_infer_cfg(direct)
    with pytest.raises(ConfigError, match="command line: unknown config key SOLVER.BASE_LRR"):
        load_config(parse_args(["--cfg", path, "SOLVER.BASE_LRR", "0.5"]))


@pytest.mark.parametrize("text,got", [
    ("", "nothing"), ("# only a comment\n", "nothing"), ("- SOLVER\n- TRAIN\n", "['SOLVER', 'TRAIN']"),
    ("42\n", "42"),
])
def test_empty_or_non_mapping_yaml_names_the_file(tmp_path, text, got):
    path = _yaml(tmp_path, text)
    for load in (lambda: merge_file(get_cfg(), path), lambda: get_cfg().merge_from_file(path),
                 lambda: load_config(parse_args(["--cfg", path]))):
        with pytest.raises(ConfigError) as err:
            load()
        assert path in str(err.value) and "mapping" in str(err.value) and got in str(err.value)


def test_empty_base_yaml_names_the_base(tmp_path):
    base = _yaml(tmp_path, "# nothing yet\n", "base.yaml")
    with pytest.raises(ConfigError, match=f"{base}: expected a mapping"):
        merge_file(get_cfg(), _yaml(tmp_path, "_BASE_: base.yaml\nSOLVER:\n  MAX_EPOCH: 7\n"))


def test_invalid_yaml_names_the_file(tmp_path):
    path = _yaml(tmp_path, "SOLVER:\n  BASE_LR: [0.1\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid yaml"):
        merge_file(get_cfg(), path)


def test_base_lr_scale_num_shards_scales_once():
    cfg = get_cfg()
    merge_list(cfg, ["NUM_GPUS", "0", "NUM_SHARDS", "2", "TRAIN.BATCH_SIZE", "2", "SOLVER.BASE_LR", "0.1",
                     "SOLVER.WARMUP_START_LR", "0.01", "SOLVER.COSINE_END_LR", "0.001"])
    unscaled = assert_and_infer_cfg(cfg.clone())
    assert (unscaled.SOLVER.BASE_LR, unscaled.SOLVER.WARMUP_START_LR) == (0.1, 0.01)
    cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS = True
    for _ in range(2):  # inferring again (e.g. from the saved config.yaml) does not scale again
        cfg = assert_and_infer_cfg(cfg)
        assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.WARMUP_START_LR, cfg.SOLVER.COSINE_END_LR) == \
            pytest.approx((0.2, 0.02, 0.002))
        assert not cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS
