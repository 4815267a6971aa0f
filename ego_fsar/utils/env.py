"""Process environment: seeds, thread counts, the path manager."""
import random

import numpy as np
import torch
from iopath.common.file_io import PathManagerFactory

pathmgr = PathManagerFactory.get(key="ego_fsar")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device_for(cfg) -> torch.device:
    """This process's device: CUDA (current device) when NUM_GPUS > 0, else CPU. Never touches CUDA
    when NUM_GPUS is 0."""
    if cfg.NUM_GPUS > 0:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
