"""EgoMCQ test (TEST.PROTOCOL egomcq): pick, for each narration query, the best-matching of its candidate
clips by the cosine of the model's text and video embeddings; top-1 accuracy per question type.

Type 1 is inter-video and type 2 intra-video (EgoVLP's released metric maps the sorted types [1, 2] to
["Intra-video", "Inter-video"], swapping the two; here each type keeps its own name). The model must
offer `encode_video(pathways) -> [B, D]` and `encode_text(texts) -> [B, D]` (VideoText). Questions
whose clips cannot be read are skipped and counted.
"""
from typing import Dict

import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import loader
from ego_fsar.datasets.egomcq import INTER_VIDEO, INTRA_VIDEO
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for
from ego_fsar.utils.logging import get_logger, log_json_stats

from .common import inputs_to, progress

logger = get_logger(__name__)
TYPE_NAMES = {INTER_VIDEO: "inter_video", INTRA_VIDEO: "intra_video"}


def mcq_accuracy(scores: torch.Tensor, answers: torch.Tensor, types: torch.Tensor) -> Dict[str, float]:
    """Top-1 accuracy (%) and question count per type: scores [Q, K] of each question's K choices,
    answers [Q] (0..K-1), types [Q] (1 inter-video, 2 intra-video)."""
    correct = scores.argmax(1) == answers
    stats: Dict[str, float] = {}
    for kind, name in TYPE_NAMES.items():
        mine = types == kind
        stats[f"{name}_questions"] = int(mine.sum())
        if mine.any():
            stats[f"{name}_acc"] = 100.0 * correct[mine].float().mean().item()
    return stats


def _batch_scores(model, batch: Dict, cfg: CfgNode, device: torch.device) -> torch.Tensor:
    """Cosine scores [B, K] of each query text with its K candidate clips."""
    b, k = batch["inputs"][0].shape[:2]
    inputs = inputs_to([p.flatten(0, 1) for p in batch["inputs"]], device, cfg.TRAIN.CHANNELS_LAST)
    video = model.encode_video(inputs).view(b, k, -1)
    text = model.encode_text(batch["text"])
    return torch.einsum("bd,bkd->bk", text, video).float().cpu()


@torch.no_grad()
def egomcq_test(cfg: CfgNode, model: torch.nn.Module) -> Dict:
    """Run EgoMCQ on TEST.DATASET (egomcq) / TEST.SPLIT; returns and logs (json_stats, `_type` egomcq)
    `inter_video_acc`, `intra_video_acc`, their question counts and `skipped`."""
    inner = du.unwrap(model)
    if not (hasattr(inner, "encode_video") and hasattr(inner, "encode_text")):
        raise ValueError(f"TEST.PROTOCOL egomcq needs a video-text model (MODEL_NAME VideoText), got "
                         f"{cfg.MODEL.MODEL_NAME}")
    device = device_for(cfg)
    test_loader = loader.construct_loader(cfg, cfg.TEST.SPLIT)
    inner.eval()
    results, skipped = {}, 0
    for batch in progress(test_loader, "egomcq"):
        part = (batch["skipped"], None if "inputs" not in batch else
                (batch["index"], _batch_scores(inner, batch, cfg, device), batch["answer"], batch["type"]))
        for n, scored in du.all_gather_object(part):
            skipped += n
            if scored is not None:  # the distributed sampler may repeat questions: keep each once
                results.update({int(i): row for i, *row in zip(*scored)})
    if not results:
        raise RuntimeError(f"no EgoMCQ question of {cfg.TEST.DATASET} could be read (see the warnings above)")
    scores, answers, types = (torch.stack([torch.as_tensor(r[j]) for r in results.values()]) for j in range(3))
    stats = dict(mcq_accuracy(scores, answers, types), skipped=skipped)
    if du.is_master_proc():
        log_json_stats(dict(stats, _type="egomcq"))
        logger.info("EgoMCQ: inter-video %.2f%%, intra-video %.2f%% (%d questions skipped)",
                    stats.get("inter_video_acc", float("nan")), stats.get("intra_video_acc", float("nan")), skipped)
    return stats
