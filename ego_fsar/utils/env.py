"""Process environment: seeds and the device."""
import random

import numpy as np
import torch
from fvcore.common.config import CfgNode


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device_for(cfg: CfgNode) -> torch.device:
    """This process's device: CUDA (current device) when NUM_GPUS > 0, else CPU. Never touches CUDA
    when NUM_GPUS is 0."""
    if cfg.NUM_GPUS > 0:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
