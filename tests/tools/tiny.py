"""Loading `tools/*.py` scripts as modules, and a tiny Slow ResNet config on the tiny EgoToy written
to a yaml file (the tools take --cfg files)."""
import importlib.util
import os

from tests.egotoy import egotoy_cfg
from tests.paths import REPO_ROOT


def load_tool(name: str):
    """tools/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_cfg(root: str, out_dir: str):
    """A Slow R18 of width 4 (ResNet classifier) on 4-frame 24/32 px clips of the tiny EgoToy at
    `root`; 6 test episodes of 2-way 1-shot with 2 queries per class."""
    cfg = egotoy_cfg(root)
    cfg.NUM_GPUS = 0
    cfg.OUTPUT_DIR = out_dir
    cfg.LOG_MODEL_INFO = False
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH = "ResNet", "slow"
    cfg.DATA.INPUT_CHANNEL_NUM = [3]
    cfg.RESNET.DEPTH, cfg.RESNET.WIDTH_PER_GROUP = 18, 4
    cfg.RESNET.NUM_BLOCK_TEMP_KERNEL = [[2], [2], [2], [2]]
    cfg.RESNET.SPATIAL_STRIDES = [[1], [2], [2], [2]]
    cfg.RESNET.SPATIAL_DILATIONS = [[1], [1], [1], [1]]
    cfg.NONLOCAL.LOCATION = [[[]]] * 4
    cfg.NONLOCAL.GROUP = [[1]] * 4
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY = 2, 1, 2
    cfg.FEW_SHOT.TEST_EPISODES = 6
    return cfg


def write_cfg(cfg, path) -> str:
    """`cfg` as a yaml file at `path`; returns the path as a string."""
    with open(path, "w") as f:
        f.write(cfg.dump())
    return str(path)
