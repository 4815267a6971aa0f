"""Tiny stand-in frames and videos for the rows a test picks: frame n is a flat grey image of level
`grey(n)`, so a test can tell from the decoded pixels which frames a dataset read."""
import os
from typing import Sequence

import av
import numpy as np
from fvcore.common.config import CfgNode
from PIL import Image

from ego_fsar.config import get_cfg

SIZE = (32, 24)  # width, height (decord needs a width that is a multiple of 32)
_CODECS = {".mp4": "libx264", ".avi": "mpeg4", ".webm": "libvpx"}


def grey(n: int) -> int:
    """Grey level of frame number n (distinct for neighbouring frames, within 16..240)."""
    return 16 + (n * 37) % 225


def write_frame(path: str, n: int) -> None:
    """Frame number n as a JPEG at `path`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", SIZE, (grey(n),) * 3).save(path, quality=95)


def write_video(path: str, numbers: Sequence[int], fps: int = 10) -> None:
    """A video whose i-th frame is frame number numbers[i]; the codec follows the extension."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream(_CODECS[os.path.splitext(path)[1]], rate=fps)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for n in numbers:
            image = np.full((SIZE[1], SIZE[0], 3), grey(n), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def greys_of(frames: np.ndarray) -> np.ndarray:
    """The grey level at the centre of each decoded frame [T,H,W,C]."""
    return frames[:, SIZE[1] // 2, SIZE[0] // 2, 0].astype(int)


def stand_in_cfg(dataset: str, data_dir, prefix, batch_size: int = 4) -> CfgNode:
    """`dataset` read from `data_dir` / `prefix` at test sizes: 4-frame single-pathway clips, 24-28 px
    jitter, 16 px crops, one view per clip, no worker processes."""
    cfg = get_cfg()
    cfg.TRAIN.DATASET = cfg.TEST.DATASET = dataset
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX = str(data_dir), str(prefix)
    cfg.DATA.NUM_FRAMES = 4
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [24, 28], 16, 16
    cfg.MODEL.ARCH = "slow"
    cfg.TEST.NUM_ENSEMBLE_VIEWS = cfg.TEST.NUM_SPATIAL_CROPS = 1
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.TRAIN.BATCH_SIZE = cfg.TEST.BATCH_SIZE = batch_size
    return cfg


CHARADES_HEADER = "original_vido_id video_id frame_id path labels"
# video: frame labels, one entry per frame
CHARADES_VIDEOS = {"0A8ZT": ["", "", "12,97", "97", "", "3"], "1B2CD": ["", "", "", ""], "E3F4G": ["150"] * 5}


def _charades_frame_list(videos) -> str:
    lines = [CHARADES_HEADER]
    for v, (name, labels) in enumerate(videos.items()):
        lines += [f'{name} {v} {f} {name}/{name}-{f + 1:06d}.jpg "{label}"' for f, label in enumerate(labels)]
    return "\n".join(lines) + "\n"


def write_charades(root: str) -> CfgNode:
    """Charades-Ego frame lists (`train_1st.csv`, `test_1st.csv`, both of CHARADES_VIDEOS) and their
    stand-in frames under `root`; returns a config (157 classes, 4-frame 16 px clips) that reads them."""
    split, rgb = os.path.join(root, "split"), os.path.join(root, "rgb")
    os.makedirs(split, exist_ok=True)
    for name in ("train_1st.csv", "test_1st.csv"):
        with open(os.path.join(split, name), "w") as f:
            f.write(_charades_frame_list(CHARADES_VIDEOS))
    for v, (name, labels) in enumerate(CHARADES_VIDEOS.items()):
        for f in range(len(labels)):
            write_frame(os.path.join(rgb, name, f"{name}-{f + 1:06d}.jpg"), 10 * v + f)
    cfg = get_cfg()
    cfg.TRAIN.DATASET = cfg.TEST.DATASET = "CharadesEgo"
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX = split, rgb
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 1
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [24, 28], 16, 16
    cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = "slow", 157
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 1
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.TRAIN.BATCH_SIZE = cfg.TEST.BATCH_SIZE = 3
    return cfg
