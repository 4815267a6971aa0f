"""The tiny EgoToy used across the tests: its size, a config that reads it, and frame paths."""
import os

from fvcore.common.config import CfgNode

from ego_fsar.config import get_cfg

# 2 source, 2 test and 1 few-shot val primitive pairs (4 + 4 + 2 classes) of 32x32 px, 8-frame clips,
# with videos, flow and keypoints.
TINY = dict(size=32, num_frames=8, source_pairs=2, test_pairs=2, fewshot_val_pairs=1, clips=(4, 2, 6, 3),
            clips_per_video=8, write_flow=True, write_pose=True)


def egotoy_cfg(root: str) -> CfgNode:
    """EgoToy read with the frames backend, 4-frame single-pathway clips, 24/32 px crops, no flips."""
    cfg = get_cfg()
    cfg.TRAIN.DATASET = cfg.TEST.DATASET = "egotoy"
    cfg.DATA.PATH_PREFIX = root
    cfg.DATA.DECODING_BACKEND = "frames"
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 2
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 40], 24, 32
    cfg.DATA.RANDOM_FLIP = False
    cfg.MODEL.ARCH = "slow"
    cfg.MODEL.NUM_CLASSES = 4
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.TRAIN.BATCH_SIZE = cfg.TEST.BATCH_SIZE = 4
    return cfg


def frame_path(root: str, participant: str, video: str, frame: int) -> str:
    return os.path.join(root, participant, "rgb_frames", video, f"frame_{frame:010d}.jpg")
