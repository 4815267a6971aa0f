"""TensorBoard scalars (master process only, when TENSORBOARD.ENABLE)."""
import os
from typing import Dict, Optional

from fvcore.common.config import CfgNode

from . import distributed as du


class TensorboardWriter:
    """Thin wrapper of `SummaryWriter` that is a no-op when disabled or off the master process."""

    def __init__(self, cfg: CfgNode):
        self.writer = None
        if not (cfg.TENSORBOARD.ENABLE and du.is_master_proc()):
            return
        from torch.utils.tensorboard import SummaryWriter

        log_dir = cfg.TENSORBOARD.LOG_DIR or f"runs-{cfg.TRAIN.DATASET}"
        self.log_dir = log_dir if os.path.isabs(log_dir) else os.path.join(cfg.OUTPUT_DIR, log_dir)
        self.writer = SummaryWriter(log_dir=self.log_dir)

    def add_scalars(self, scalars: Dict[str, float], global_step: Optional[int] = None) -> None:
        """Write each numeric value of `scalars` under its key."""
        if self.writer is None:
            return
        for key, value in scalars.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, global_step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
