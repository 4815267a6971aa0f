"""The tiny EgoToy EgoClip/EgoMCQ set (written once per session) and a VideoText config that reads it."""
import os

import pytest

from ego_fsar.config import get_cfg
from ego_fsar.datasets.egotoy_egoclip import make_egotoy_egoclip

# 4 source classes, 4 train and 8 val clips each, 6 clips of 8 32x32 frames per video, 1-s chunks.
TINY_EGOCLIP = dict(size=32, num_frames=8, source_pairs=2, clips=(4, 8), clips_per_video=6, chunk_sec=1.0)


@pytest.fixture(scope="session")
def egotoy_egoclip_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("egotoy_egoclip") / "egoclip")
    make_egotoy_egoclip(root, seed=0, **TINY_EGOCLIP)
    return root


def egovlp_cfg(root: str, output_dir: str):
    """Tiny VideoText pre-training on `root` (frozen MiniLM, 1-block ViT) then the EgoMCQ test."""
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "configs", "EgoVLP", "EGOTOY_PRETRAIN.yaml"))
    cfg.DATA.PATH_PREFIX = os.path.join(root, "videos")
    cfg.DATA.PATH_TO_DATA_DIR = os.path.join(root, "annotations")
    cfg.EGOVLP.CHUNK_SEC = TINY_EGOCLIP["chunk_sec"]
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 32], 32, 32
    # EgoVLP's default tower, the video ViT, tiny (the EgoToy config's tower is the demo's SlowFast).
    cfg.MODEL.BACKBONE, cfg.MODEL.ARCH, cfg.DATA.INPUT_CHANNEL_NUM = "VideoViT", "vit", [3]
    cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = 16, 1, 2, 16
    cfg.VIT.TUBELET_SIZE, cfg.VIT.LEARNABLE_POS_EMBED = 2, True
    cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE, cfg.SOLVER.MAX_EPOCH = 8, 8, 1
    cfg.DATA_LOADER.NUM_WORKERS, cfg.LOG_MODEL_INFO = 0, False
    cfg.OUTPUT_DIR = output_dir
    return cfg
