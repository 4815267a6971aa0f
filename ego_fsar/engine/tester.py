"""Testing entry: load the test checkpoint, then run the protocol named by `TEST.PROTOCOL`."""
import json
import os
import pickle
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import loader
from ego_fsar.models import build_model
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.logging import get_logger, setup_logging
from ego_fsar.utils.metrics import SINGLE_TASK
from ego_fsar.utils.tensorboard import TensorboardWriter
from ego_fsar.utils.video_meter import TestMeter

from .common import channels_last_3d, inputs_to, progress
from .egomcq_test import egomcq_test
from .fewshot_test import episodic_test
from .head_selection import fewshot_parts

logger = get_logger(__name__)

_ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": lambda x: x.softmax(-1),
    "sigmoid": torch.sigmoid,
    "none": lambda x: x,
}


def class_scores(model: torch.nn.Module, inputs: List[torch.Tensor], tasks: Sequence[str], cfg: CfgNode,
                 device: torch.device) -> Dict[str, torch.Tensor]:
    """{task: scores [B, C_task]} on the CPU: the model's outputs `tasks` (e.g. ["logits"], or ["verb",
    "noun"]) for pathway inputs [B,C,T,H,W], activated by MODEL.HEAD_ACT."""
    outputs = model(inputs_to(inputs, device, cfg.TRAIN.CHANNELS_LAST))
    act = _ACTIVATIONS[cfg.MODEL.HEAD_ACT]
    return {k: act(outputs[k].float()).cpu() for k in tasks}


def _batch_scores(model: torch.nn.Module, batch: Dict, views: int, cfg: CfgNode,
                  device: torch.device) -> Optional[Tuple]:
    """(scores [B, C] or {task: [B, C_task]}, labels, clip ids [B]) on the CPU of a batch's readable
    items (clip id = clip index * views: the meter groups items by clip_id // views); None without any."""
    if "inputs" not in batch:
        return None
    labels = batch["label"]
    if isinstance(labels, dict):
        scores = class_scores(model, batch["inputs"], list(labels), cfg, device)
    else:
        scores = class_scores(model, batch["inputs"], [SINGLE_TASK], cfg, device)[SINGLE_TASK]
    return scores, labels, batch["index"] * views


def _save_results(cfg: CfgNode, meter: TestMeter) -> None:
    """Pickle [scores, labels] per video (see TestMeter.video_results) to OUTPUT_DIR/TEST.SAVE_RESULTS_PATH,
    and the per-class results (TestMeter.per_class_results: top-1 or AP per class id and task) as json
    beside it (`<name>_per_class.json`), each through a temporary file renamed over it."""
    path = os.path.join(cfg.OUTPUT_DIR, cfg.TEST.SAVE_RESULTS_PATH)
    cu.atomic_write(path, lambda f: pickle.dump(list(meter.video_results()), f))
    per_class = f"{os.path.splitext(path)[0]}_per_class.json"
    cu.atomic_write(per_class, lambda f: json.dump(meter.per_class_results(), f, indent=1), "w")
    logger.info("Saved the per-video test scores and labels to %s, the per-class results to %s", path, per_class)


@torch.no_grad()
def multiview_test(cfg: CfgNode, model: torch.nn.Module) -> Dict:
    """PySlowFast's multi-view test: NUM_ENSEMBLE_VIEWS x NUM_SPATIAL_CROPS views per clip, scores
    activated by MODEL.HEAD_ACT and combined per clip by DATA.ENSEMBLE_METHOD.

    A view that cannot be read is skipped (see datasets.utils): a dataset clip (the meter's "video")
    is scored on the views it got and left out when it got none; the record counts them
    (`videos_evaluated`, `videos_skipped`, `clips_skipped` = unreadable views). With
    TEST.SAVE_RESULTS_PATH, the master process also pickles the per-video [scores, labels]."""
    if hasattr(du.unwrap(model), "fewshot_head"):
        raise ValueError(f"TEST.PROTOCOL multiview scores a classifier; MODEL.MODEL_NAME {cfg.MODEL.MODEL_NAME} "
                         f"classifies episodes: use TEST.PROTOCOL episodic")
    device = device_for(cfg)
    test_loader = loader.construct_loader(cfg, cfg.TEST.SPLIT)
    dataset = test_loader.dataset
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    num_videos = len(dataset) // views
    meter = TestMeter(num_videos, views, cfg.MODEL.NUM_CLASSES, cfg.DATA.ENSEMBLE_METHOD, cfg.DATA.MULTI_LABEL)
    model.eval()
    for batch in progress(test_loader, "test"):
        # Ranks may keep different numbers of items: gather objects, not equal-shape tensors.
        part = (batch["skipped"], _batch_scores(model, batch, views, cfg, device))
        for skipped, scores in du.all_gather_object(part):
            meter.add_skipped(skipped)
            if scores is not None:
                meter.update_stats(*scores)
    if not du.is_master_proc():
        return {}
    stats = meter.finalize_metrics()
    if stats["clips_skipped"]:
        logger.warning("%d unreadable test clips (views) were skipped: %d of %d videos evaluated, %d left out",
                       stats["clips_skipped"], stats["videos_evaluated"], num_videos, stats["videos_skipped"])
    if cfg.TEST.SAVE_RESULTS_PATH:
        _save_results(cfg, meter)
    return stats


_PROTOCOLS = {"multiview": multiview_test, "episodic": episodic_test, "egomcq": egomcq_test}


def build_test_model(cfg: CfgNode) -> Tuple[torch.nn.Module, Optional[str]]:
    """MODEL.MODEL_NAME (channels-last with TRAIN.CHANNELS_LAST) holding the test checkpoint's weights,
    and that checkpoint's path (None: randomly initialised, warned)."""
    model = build_model(cfg)
    if cfg.TRAIN.CHANNELS_LAST:
        model = channels_last_3d(model)
    return model, cu.load_test_checkpoint(cfg, model)


def build_fewshot_parts(cfg: CfgNode) -> Tuple[torch.nn.Module, torch.nn.Module, Optional[str]]:
    """(backbone, few-shot head, checkpoint path) of the test model, in eval mode: see `build_test_model`
    and `fewshot_parts` (untrained heads are refused as in the episodic test)."""
    model, checkpoint = build_test_model(cfg)
    backbone, head = fewshot_parts(model, cfg)
    return backbone.eval(), head.eval(), checkpoint


def test(cfg: CfgNode) -> Dict:
    """Build the model, load the test checkpoint (PySlowFast precedence) and run TEST.PROTOCOL. With
    FEW_SHOT.FEATURE_STORE the episodic test reads the store and no model is built. The protocol's record
    (also in json_stats) goes to TensorBoard as `Test/<field>`."""
    if cfg.TEST.PROTOCOL not in _PROTOCOLS:
        raise ValueError(f"TEST.PROTOCOL must be one of {sorted(_PROTOCOLS)}, got {cfg.TEST.PROTOCOL!r}")
    seed_everything(cfg.RNG_SEED)
    setup_logging(cfg.OUTPUT_DIR)
    if cfg.FEW_SHOT.FEATURE_STORE:
        if cfg.TEST.PROTOCOL != "episodic":
            raise ValueError(f"FEW_SHOT.FEATURE_STORE {cfg.FEW_SHOT.FEATURE_STORE!r} is read by the episodic test "
                             f"only: set TEST.PROTOCOL episodic (it is {cfg.TEST.PROTOCOL!r}) or FEW_SHOT.FEATURE_STORE ''")
        summary = episodic_test(cfg, None)
    else:
        summary = _PROTOCOLS[cfg.TEST.PROTOCOL](cfg, build_test_model(cfg)[0])
    with TensorboardWriter(cfg) as writer:
        writer.add_scalars({f"Test/{key}": value for key, value in summary.items()})
    return summary
