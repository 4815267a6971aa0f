"""The tiny EgoToy with its exo twin, and configs that train SUM-L on it (shared by SUM-L tests)."""
import shutil

from fvcore.common.config import CfgNode

from ego_fsar.datasets.egotoy_exo import make_egotoy_exo
from tests.egotoy import TINY


def make_exo_root(egotoy_root: str, root: str) -> str:
    """A copy of the tiny EgoToy at `root` with its exo twin written under `root/exo`."""
    shutil.copytree(egotoy_root, root)
    make_egotoy_exo(root, seed=0, size=TINY["size"], num_frames=TINY["num_frames"], clips_per_video=8)
    return root


def suml_data_cfg(cfg: CfgNode, root: str, out_dir) -> CfgNode:
    """`cfg` training on SUMLPairs (EgoToy + EgoToyExo at `root`), outputs and text cache in `out_dir`."""
    cfg.DATA.PATH_PREFIX = root
    cfg.OUTPUT_DIR = str(out_dir)
    cfg.TEXT.CACHE_DIR = str(out_dir / "text")
    cfg.TRAIN.DATASET = "SUMLPairs"
    cfg.SUML.EGO_DATASET, cfg.SUML.EXO_DATASET = "EgoToy", "EgoToyExo"
    cfg.SUML.EXO_NUM_CLASSES = [10, 10]  # tiny EgoToy: 10 verb (action) classes, 10 noun (digit) classes
    return cfg
