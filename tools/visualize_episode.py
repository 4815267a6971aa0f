"""Draw one episode of the episodic test as a PNG: a row per class with its support clips, then its
query clips titled with the predicted class, green when right and red when wrong.

    python tools/visualize_episode.py --cfg configs/EgoToy/SLOWFAST_DEMO.yaml [--episode 0] [--out episode.png] \
        [--frames 4] [KEY VALUE ...]

The episode is the one the episodic test scores (drawn with FEW_SHOT.SEED, or read from
FEW_SHOT.EPISODES_FILE when it exists). Predictions come from the model loaded with the test
checkpoint precedence (TEST.CHECKPOINT_FILE_PATH, else the last checkpoint in OUTPUT_DIR, else
TRAIN.CHECKPOINT_FILE_PATH) and its few-shot head (a FewShot model's own, else HEAD.NAME on the
backbone), on the deterministic test view of each clip. Frames are shown denormalised with
DATA.MEAN / DATA.STD (RGB inputs only).
"""
import argparse
import os
import sys
from dataclasses import dataclass
from typing import List, Optional

import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import Episode, episodes_for_cfg
from ego_fsar.engine.episode_runner import extract_features
from ego_fsar.engine.tester import build_fewshot_parts
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.parser import load_config, parse_args
from ego_fsar.utils.visualization import clip_strip, draw_episode


@dataclass
class EpisodePrediction:
    """Episode `episode` of `dataset` (its classes' names in episode order), the predicted class
    position (0..N-1) of each query, the checkpoint loaded (None: random weights) and the head's name."""

    dataset: object
    episode: Episode
    class_names: List[str]
    predictions: List[int]
    checkpoint: Optional[str]
    head_name: str

    @property
    def num_correct(self) -> int:
        return sum(p == y for p, y in zip(self.predictions, self.episode.query_labels))


@torch.no_grad()
def predict_episode(cfg: CfgNode, index: int) -> EpisodePrediction:
    """Test episode `index` of TEST.DATASET / TEST.SPLIT and the model's predictions for its queries."""
    cfg = cfg.clone()
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    seed_everything(cfg.RNG_SEED)
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    episodes = episodes_for_cfg(cfg, dataset.labels)
    if not 0 <= index < len(episodes):
        raise SystemExit(f"--episode {index}: the test has episodes 0..{len(episodes) - 1} (FEW_SHOT.TEST_EPISODES)")
    episode = episodes[index]
    backbone, head, checkpoint = build_fewshot_parts(cfg)
    device = device_for(cfg)
    features = extract_features(backbone, dataset, episode.support + episode.query, cfg, "episode")
    shots = len(episode.support)
    support = features.index(torch.arange(shots)).to(device)
    query = features.index(torch.arange(shots, shots + len(episode.query))).to(device)
    labels = torch.as_tensor(episode.support_labels, device=device)
    class_names = [dataset.class_names[c] for c in episode.class_ids]
    logits = head(support, labels, query, episode.n_way, class_text=class_names)["logits"]
    return EpisodePrediction(dataset, episode, class_names, logits.argmax(1).tolist(), checkpoint,
                             type(head).__name__)


def render(cfg: CfgNode, result: EpisodePrediction, num_frames: int):
    """The episode's figure (see `ego_fsar.utils.visualization.draw_episode`)."""
    episode = result.episode
    strips = {i: clip_strip(cfg, result.dataset, i, num_frames) for i in episode.support + episode.query}
    weights = os.path.basename(result.checkpoint) if result.checkpoint else "random weights (no checkpoint)"
    title = (f"{cfg.TEST.DATASET} {cfg.TEST.SPLIT}, episode {episode.index}: {episode.n_way}-way "
             f"{cfg.FEW_SHOT.SHOT}-shot, {cfg.FEW_SHOT.QUERY} queries per class\n"
             f"{result.head_name} head on {cfg.MODEL.MODEL_NAME}, {weights}")
    return draw_episode([strips[i] for i in episode.support], episode.support_labels,
                        [strips[i] for i in episode.query], episode.query_labels, result.predictions,
                        result.class_names, title)


def main(argv: Optional[List[str]] = None) -> str:
    """Write the PNG and return its path."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--episode", type=int, default=0, help="index of the test episode to draw")
    parser.add_argument("--out", default="", help="PNG to write (default: OUTPUT_DIR/episode_<index>.png)")
    parser.add_argument("--frames", type=int, default=4, choices=range(1, 65), metavar="1..64",
                        help="frames shown per clip")
    options, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    args = parse_args(rest)
    if not args.cfg_files:
        raise SystemExit("visualize_episode.py: give a config: --cfg A.yaml [KEY VALUE ...]")
    cfg = load_config(args)
    result = predict_episode(cfg, options.episode)
    path = options.out or os.path.join(cfg.OUTPUT_DIR, f"episode_{options.episode:05d}.png")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    render(cfg, result, options.frames).savefig(path, dpi=100)
    print(f"episode {options.episode}: {result.num_correct}/{len(result.predictions)} queries right; "
          f"weights: {result.checkpoint or 'random'}; wrote {path}")
    return path


if __name__ == "__main__":
    main()
