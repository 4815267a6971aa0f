"""Testing entry: load the test checkpoint, then run the protocol named by `TEST.PROTOCOL`."""
from typing import Callable, Dict

import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import loader
from ego_fsar.models import build_model
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.logging import get_logger, setup_logging
from ego_fsar.utils.meters import TestMeter

from .common import channels_last_3d, inputs_to, labels_to, progress
from .fewshot_test import episodic_test

logger = get_logger(__name__)

_ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": lambda x: x.softmax(-1),
    "sigmoid": torch.sigmoid,
    "none": lambda x: x,
}


@torch.no_grad()
def multiview_test(cfg: CfgNode, model: torch.nn.Module) -> Dict:
    """PySlowFast's multi-view test: NUM_ENSEMBLE_VIEWS x NUM_SPATIAL_CROPS views per clip, scores
    activated by MODEL.HEAD_ACT and combined per clip by DATA.ENSEMBLE_METHOD."""
    if hasattr(du.unwrap(model), "fewshot_head"):
        raise ValueError(f"TEST.PROTOCOL multiview scores a classifier; MODEL.MODEL_NAME {cfg.MODEL.MODEL_NAME} "
                         f"classifies episodes: use TEST.PROTOCOL episodic")
    device = device_for(cfg)
    test_loader = loader.construct_loader(cfg, cfg.TEST.SPLIT)
    dataset = test_loader.dataset
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    num_videos = len(dataset) // views
    act = _ACTIVATIONS[cfg.MODEL.HEAD_ACT]
    meter = TestMeter(num_videos, views, cfg.MODEL.NUM_CLASSES, cfg.DATA.ENSEMBLE_METHOD, cfg.DATA.MULTI_LABEL)
    model.eval()
    for batch in progress(test_loader, "test"):
        outputs = model(inputs_to(batch["inputs"], device, cfg.TRAIN.CHANNELS_LAST))
        labels = labels_to(batch["label"], device)
        clip_ids = batch["index"].to(device) * views  # the meter groups items by clip_id // views
        if isinstance(labels, dict):
            preds = {k: act(outputs[k].float()) for k in labels}
            gathered = {k: du.all_gather_cat(v) for k, v in preds.items()}
            labels = {k: du.all_gather_cat(v) for k, v in labels.items()}
        else:
            gathered = du.all_gather_cat(act(outputs["logits"].float()))
            labels = du.all_gather_cat(labels)
        meter.update_stats(gathered, labels, du.all_gather_cat(clip_ids))
    return meter.finalize_metrics() if du.is_master_proc() else {}


_PROTOCOLS = {"multiview": multiview_test, "episodic": episodic_test}


def test(cfg: CfgNode) -> Dict:
    """Build the model, load the test checkpoint (PySlowFast precedence) and run TEST.PROTOCOL."""
    if cfg.TEST.PROTOCOL not in _PROTOCOLS:
        raise ValueError(f"TEST.PROTOCOL must be one of {sorted(_PROTOCOLS)}, got {cfg.TEST.PROTOCOL!r}")
    seed_everything(cfg.RNG_SEED)
    setup_logging(cfg.OUTPUT_DIR)
    model = build_model(cfg)
    if cfg.TRAIN.CHANNELS_LAST:
        model = channels_last_3d(model)
    cu.load_test_checkpoint(cfg, model)
    return _PROTOCOLS[cfg.TEST.PROTOCOL](cfg, model)
