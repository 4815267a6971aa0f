"""Data time against step time for `train`: seconds per batch of the configured training loader
(DATA_LOADER.NUM_WORKERS, PREFETCH_FACTOR, PERSISTENT_WORKERS, PIN_MEMORY as training builds it), the
first batch (worker start-up) apart, against the step's seconds."""
import statistics
import time
from typing import List

from fvcore.common.config import CfgNode

from ego_fsar.engine.protocols import get_protocol


def batch_seconds(cfg: CfgNode, num_batches: int) -> List[float]:
    """Seconds waited for each of the first `num_batches` batches of the TRAIN split's loader (epoch 0)."""
    data_loader = get_protocol(cfg).loader(cfg, cfg.DATA.TRAIN_SPLIT)
    data_loader.set_epoch(0)
    seconds, iterator = [], iter(data_loader)
    for _ in range(min(num_batches, len(data_loader))):
        tic = time.perf_counter()
        next(iterator)
        seconds.append(time.perf_counter() - tic)
    return seconds


def data_line(cfg: CfgNode, num_batches: int, step_s: float) -> str:
    """Data time per batch (median after the first) against `step_s`, and whether training would warn
    (data time above a fifth of the step); or why it was not measured."""
    loader_text = (f"DATA_LOADER.NUM_WORKERS {cfg.DATA_LOADER.NUM_WORKERS}, PREFETCH_FACTOR "
                   f"{cfg.DATA_LOADER.PREFETCH_FACTOR}, PERSISTENT_WORKERS {cfg.DATA_LOADER.PERSISTENT_WORKERS}")
    try:
        seconds = batch_seconds(cfg, num_batches + 1)
    except (OSError, ValueError, RuntimeError) as e:
        return f"data time: not measured ({cfg.TRAIN.DATASET} {cfg.DATA.TRAIN_SPLIT} unavailable: {e})"
    if len(seconds) < 2:
        return f"data time: not measured ({cfg.TRAIN.DATASET} {cfg.DATA.TRAIN_SPLIT} has {len(seconds)} batch(es))"
    data_s = statistics.median(seconds[1:])
    verdict = "training would warn: the loader starves the step" if data_s > step_s / 5 else "below a fifth"
    return (f"data time ({cfg.TRAIN.DATASET} {cfg.DATA.TRAIN_SPLIT}, {loader_text}): {data_s:.3f} s/batch "
            f"(median of {len(seconds) - 1} after a first of {seconds[0]:.3f} s) against {step_s:.3f} s/step: "
            f"{data_s / step_s:.2f} of the step ({verdict})")
