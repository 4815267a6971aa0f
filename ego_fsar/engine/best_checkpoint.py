"""The best-on-validation checkpoint (`checkpoint_best.pyth`) and the metric that selects it.

`TRAIN.BEST_METRIC` names a field of the `val_epoch` stats; by default it follows the task (top-1 error,
EPIC's action top-1 error, multi-label mAP). The metric's name and value are stored in the checkpoint
(`best_metric`) so a resumed run only replaces it with a better one.
"""
from typing import Dict, Optional

import torch
from fvcore.common.config import CfgNode

from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils.logging import get_logger

logger = get_logger(__name__)


def best_metric_name(cfg: CfgNode) -> str:
    """`TRAIN.BEST_METRIC`, with "auto" resolved by the task (see defaults.py)."""
    if cfg.TRAIN.BEST_METRIC != "auto":
        return cfg.TRAIN.BEST_METRIC
    if cfg.DATA.MULTI_LABEL:
        return "map"
    if isinstance(cfg.MODEL.NUM_CLASSES, (list, tuple)):
        return "action_top1_err"
    return "top1_err"


def lower_is_better(metric: str) -> bool:
    """Errors (`*_err`) are minimised; every other statistic (mAP, accuracy) is maximised."""
    return metric.endswith("_err")


class BestCheckpoint:
    """Writes `checkpoint_best.pyth` after a validation epoch that improves the selected metric.

    Logs the metric it selects on, and warns (once) when the validation stats do not contain it."""

    def __init__(self, cfg: CfgNode):
        self.cfg = cfg
        self.metric = best_metric_name(cfg)
        self.minimise = lower_is_better(self.metric)
        self.path = cu.get_best_checkpoint_path(cfg.OUTPUT_DIR)
        self.best = self._stored_value()
        self._warned = False
        logger.info("Best-on-val checkpoint %s selects on %s (%s is better)%s", self.path, self.metric,
                    "lower" if self.minimise else "higher",
                    "" if self.best is None else f"; best so far {self.best:.4f}")

    def _stored_value(self) -> Optional[float]:
        """The metric value of an existing best checkpoint (a resumed run), if it used the same metric."""
        stored = cu.read_best_metric(self.path)
        if stored is None:
            return None
        if stored["name"] != self.metric:
            logger.warning("%s was selected on %s, this run selects on %s: it will be replaced by the next "
                           "validation epoch", self.path, stored["name"], self.metric)
            return None
        return float(stored["value"])

    def improves(self, val_stats: Dict) -> bool:
        """True when `val_stats[metric]` beats the best value so far (always when there is none)."""
        value = val_stats.get(self.metric)
        if value is None:
            if not self._warned:
                logger.warning("TRAIN.BEST_METRIC %s is not among the validation stats (%s): no best "
                               "checkpoint is written", self.metric,
                               ", ".join(sorted(k for k in val_stats if not k.startswith("_"))))
                self._warned = True
            return False
        if self.best is None:
            return True
        return value < self.best if self.minimise else value > self.best

    def step(self, val_stats: Dict, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], cur_epoch: int,
             scaler: Optional[torch.amp.GradScaler] = None) -> bool:
        """Save the model as the best checkpoint if `val_stats` improves the metric; returns whether
        it did. Called on every process (saving is collective-safe)."""
        if not self.improves(val_stats):
            return False
        self.best = float(val_stats[self.metric])
        cu.save_checkpoint(self.cfg.OUTPUT_DIR, model, optimizer, cur_epoch, self.cfg, scaler, path=self.path,
                           extra={"best_metric": {"name": self.metric, "value": self.best}})
        logger.info("New best %s = %.4f at epoch %d: wrote %s", self.metric, self.best, cur_epoch + 1, self.path)
        return True
