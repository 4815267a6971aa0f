"""How much temporal order a backbone's features carry, on the episodic test's own episodes.

    python tools/temporal_probe.py --cfg configs/EgoToy/FEWSHOT_SLOWFAST.yaml [KEY VALUE ...]

Prints, for the configured backbone (weights by the test checkpoint precedence) and few-shot head:
- the head's accuracy on the episodes as they are;
- its accuracy when every query clip is played backwards (supports unchanged): features that keep
  order send a reversed "A then B" to the class "B then A", so accuracy falls (below chance where
  every class has its reversed twin in the test set, as in EgoToy);
- the mean cosine similarity between the first and the last per-frame feature (`frames`) of a clip:
  near 1 means every frame feature already sees the whole clip, leaving a temporal alignment head
  (OTAM, TRX) little to align.
"""
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import episodes_for_cfg
from ego_fsar.engine.episode_runner import episode_accuracy, episode_class_names, extract_features
from ego_fsar.engine.head_selection import fewshot_parts
from ego_fsar.models import BackboneOutput, build_model
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils.env import device_for
from ego_fsar.utils.logging import setup_logging
from ego_fsar.utils.parser import load_config, parse_args


class TimeReversed(torch.nn.Module):
    """`backbone` applied to clips played backwards (every pathway flipped along T)."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone
        self.out_dim = backbone.out_dim

    def forward(self, inputs: List[torch.Tensor]) -> BackboneOutput:
        return self.backbone([x.flip(2) for x in inputs])


@torch.no_grad()
def accuracy(head, support: BackboneOutput, query: BackboneOutput, episodes, rows, dataset,
             device: torch.device) -> List[float]:
    """Per-episode accuracy of `head` with supports cut from `support` and queries from `query` (rows
    `rows[clip]`), scored as the episodic test does (class names of `dataset` for text heads)."""
    accs = []
    for ep in episodes:
        s = support.index(torch.as_tensor([rows[i] for i in ep.support]))
        q = query.index(torch.as_tensor([rows[i] for i in ep.query]))
        accs.append(episode_accuracy(head, s, q, ep, episode_class_names(dataset, ep), device))
    return accs


def _summary(accs: List[float]) -> str:
    accs = np.asarray(accs) * 100
    return f"{accs.mean():.2f} ± {1.96 * accs.std() / np.sqrt(len(accs)):.2f}"


def probe(cfg) -> Dict[str, object]:
    """Per-episode accuracies (`recorded`, `reversed`) and the mean first/last frame cosine."""
    model = build_model(cfg)
    cu.load_test_checkpoint(cfg, model)
    backbone, head = fewshot_parts(model, cfg)
    backbone.eval()
    head.eval()
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    episodes = episodes_for_cfg(cfg, dataset.labels)
    clips = sorted({i for ep in episodes for i in (*ep.support, *ep.query)})
    rows = {clip: row for row, clip in enumerate(clips)}
    forward = extract_features(backbone, dataset, clips, cfg, "forward")
    backward = extract_features(TimeReversed(backbone), dataset, clips, cfg, "backward")
    return {
        "recorded": accuracy(head, forward, forward, episodes, rows, dataset, device_for(cfg)),
        "reversed": accuracy(head, forward, backward, episodes, rows, dataset, device_for(cfg)),
        "first_last_cosine": F.cosine_similarity(forward.frames[:, 0], forward.frames[:, -1], dim=-1).mean().item(),
    }


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    cfg = load_config(parse_args(argv))
    cfg.NUM_GPUS = 0
    setup_logging()
    result = probe(cfg)
    print(f"{cfg.HEAD.NAME} on {len(result['recorded'])} episodes ({cfg.FEW_SHOT.WAY}-way {cfg.FEW_SHOT.SHOT}-shot):")
    print(f"  queries as recorded:      {_summary(result['recorded'])}")
    print(f"  queries played backwards: {_summary(result['reversed'])}")
    print(f"  cosine(first frame feature, last frame feature), mean over clips: {result['first_last_cosine']:.3f}")
    return result


if __name__ == "__main__":
    main()
