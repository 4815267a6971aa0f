"""TensorBoard scalars (master process only, when TENSORBOARD.ENABLE).

Tags: `Train/*` (per iteration and per epoch), `Val/*` (per epoch), `Test/*` (the test record of any
TEST.PROTOCOL; the episodic test adds `Test/episode_acc` per episode index) and `Features/*` (the
feature-extraction record), in OUTPUT_DIR/TENSORBOARD.LOG_DIR (default `runs-<TRAIN.DATASET>`).
"""
import os
from typing import Dict, Optional

from fvcore.common.config import CfgNode

from . import distributed as du


class TensorboardWriter:
    """Thin wrapper of `SummaryWriter` that is a no-op when disabled or off the master process; a context
    manager that closes it."""

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

    def __enter__(self) -> "TensorboardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
