"""Few-shot classification of your own videos: label query videos with the classes of a few example
clips, print each query's class probabilities, and write labelled copies of the queries.

    python tools/fewshot_demo.py --support my_clips/ --query new.mp4 [--cfg X.yaml] [--checkpoint F] \
        [--head NAME] [--out DIR] [--gif] [--frames 4] [--max-side 480] [KEY VALUE ...]

--support DIR   the support set: DIR/<class name>/<video> (VideoFolder; every video of a class is one of
                its K examples, K may differ between classes; class names are the folder names)
--query PATH    a video file, a frame folder, a folder of videos (searched recursively) or a .txt list
--cfg           default configs/EgoToy/SLOWFAST_DEMO.yaml: a SlowFast of 1.9M parameters on 8 frames of
                64 px, a few seconds on a CPU for a handful of short clips
--checkpoint F  model weights (TEST.CHECKPOINT_FILE_PATH); without it the test precedence applies (OUTPUT_DIR's
                last checkpoint, else TRAIN.CHECKPOINT_FILE_PATH), else the backbone is randomly initialised
                (warned: the predictions then mean nothing). For the default config, `make demo` pre-trains it
                on EgoToy and writes output/demo/pretrained/checkpoints/checkpoint_epoch_00015.pyth
--head NAME     the few-shot head (HEAD.NAME, default the config's: ProtoNet). ProtoNet, OTAM and LogReg need no
                training; TRX, TAMT and EMP-Net (which reads the class names, the folder names, as text) need a
                meta-trained checkpoint (MODEL.MODEL_NAME FewShot, TRAIN.PROTOCOL episodic), or
                TEST.ALLOW_UNTRAINED_HEAD True to run their random weights; TAMT and EMP-Net also need a backbone
                returning hidden token maps (e.g. --cfg configs/EgoToy/FEWSHOT_SLOWFAST.yaml)
--out DIR       default OUTPUT_DIR/fewshot_demo
--gif           labelled copies as GIF instead of MP4

Each clip is read as the episodic test reads it (whole video, DATA.TEMPORAL_SAMPLING of DATA.NUM_FRAMES
frames, deterministic test crop) and goes through the backbone once; the head is called as the episodic
test calls it, with the support clips as one N-way episode. Written to --out:
- `<query name>.mp4` (or `.gif`): every frame of the query, scaled to at most --max-side pixels (0: original
  size; MP4 crops an odd height or width by one pixel), with the predicted class and its probability drawn
  across the top;
- `episode.png`: a row per class with its support clips (--frames frames each) and the queries predicted as it;
- `predictions.json`: the classes, the head, the checkpoint, and each query's probabilities.
Speed-ups for CPU (any KEY VALUE of the config): DATA.NUM_FRAMES, DATA.TEST_CROP_SIZE, DATA.TRAIN_CROP_SIZE.
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Iterator, List, Optional

import numpy as np
import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets.video_folder import VideoFiles, VideoFolder, open_any, videos_from_arg
from ego_fsar.engine.episode_runner import extract_features
from ego_fsar.engine.tester import build_fewshot_parts
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.logging import get_logger, setup_logging
from ego_fsar.utils.parser import load_config, parse_args
from ego_fsar.utils.video_writer import caption_frames, fit_frames, write_gif, write_mp4
from ego_fsar.utils.visualization import clip_strip, draw_episode

logger = get_logger(__name__)
DEFAULT_CFG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "EgoToy", "SLOWFAST_DEMO.yaml")
PREDICTIONS_JSON = "predictions.json"
EPISODE_PNG = "episode.png"
# Frames decoded at a time when writing a labelled copy.
CHUNK = 64


@dataclass
class DemoResult:
    """The support set, the queries, the class probabilities [num queries, N] of the head's logits, the
    checkpoint loaded (None: random weights) and the head's name."""

    support: VideoFolder
    queries: VideoFiles
    probabilities: torch.Tensor
    checkpoint: Optional[str]
    head_name: str

    @property
    def class_names(self) -> List[str]:
        return self.support.class_names

    @property
    def predictions(self) -> List[int]:
        return self.probabilities.argmax(1).tolist()


def demo_cfg(cfg: CfgNode, support_dir: str, checkpoint: str = "", head: str = "") -> CfgNode:
    """`cfg` reading the support tree `support_dir` (every video of it), one test view per clip, with
    TEST.CHECKPOINT_FILE_PATH `checkpoint` and HEAD.NAME `head` when given."""
    cfg = cfg.clone()
    cfg.DATA.PATH_PREFIX, cfg.DATA.PATH_TO_DATA_DIR = support_dir, ""
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    if checkpoint:
        cfg.TEST.CHECKPOINT_FILE_PATH = checkpoint
    if head:
        cfg.HEAD.NAME = head
    return cfg


@torch.no_grad()
def classify(cfg: CfgNode, query_paths: List[str]) -> DemoResult:
    """Class probabilities of each query video among the classes of the support tree DATA.PATH_PREFIX
    (see `demo_cfg`), from the model of the test checkpoint precedence and its few-shot head."""
    if cfg.TEST.NUM_MASKED_VIEWS > 0:
        raise ValueError(f"TEST.NUM_MASKED_VIEWS {cfg.TEST.NUM_MASKED_VIEWS}: the demo runs one unmasked view "
                         f"per clip; set it to 0")
    seed_everything(cfg.RNG_SEED)
    support = VideoFolder(cfg, cfg.TEST.SPLIT)
    queries = VideoFiles(cfg, query_paths)
    backbone, head, checkpoint = build_fewshot_parts(cfg)
    if checkpoint is None:
        logger.warning("No checkpoint: the backbone is RANDOMLY INITIALISED and its predictions mean nothing. "
                       "Pass --checkpoint F (for the default config, `make demo` writes "
                       "output/demo/pretrained/checkpoints/checkpoint_epoch_00015.pyth)")
    device = device_for(cfg)
    support_features = extract_features(backbone, support, range(len(support)), cfg, "support").to(device)
    query_features = extract_features(backbone, queries, range(len(queries)), cfg, "queries").to(device)
    labels = torch.as_tensor(support.labels, device=device)
    logits = head(support_features, labels, query_features, len(support.class_names),
                  class_text=support.class_names)["logits"]
    return DemoResult(support, queries, logits.float().softmax(1).cpu(), checkpoint, type(head).__name__)


def probability_table(result: DemoResult) -> str:
    """A line per query: its probability of each class, the predicted class and the query's path."""
    width = max(8, *(len(name) + 2 for name in result.class_names))
    header = "".join(f"{name:>{width}}" for name in result.class_names)
    lines = [f"{header}  {'prediction':<{width}}  query"]
    for name, probs, predicted in zip(result.queries.names, result.probabilities.tolist(), result.predictions):
        row = "".join(f"{p:>{width}.4f}" for p in probs)
        lines.append(f"{row}  {result.class_names[predicted]:<{width}}  {name}")
    return "\n".join(lines)


def _caption(result: DemoResult, query: int) -> str:
    predicted = result.predictions[query]
    return f"{result.class_names[predicted]} {100 * result.probabilities[query, predicted].item():.1f}%"


def labelled_frames(cfg: CfgNode, path: str, caption: str, max_side: int) -> Iterator[np.ndarray]:
    """Every frame [H,W,3] of the video `path`, scaled to at most `max_side` pixels, with `caption` drawn."""
    reader = open_any(path, cfg)
    for start in range(0, reader.num_frames, CHUNK):
        frames = reader.read(np.arange(start, min(start + CHUNK, reader.num_frames)))
        yield from caption_frames(fit_frames(frames, max_side), caption)


def _output_names(paths: List[str]) -> List[str]:
    """A distinct file stem per query: the video's name without extension (`_2`, `_3`, ... on repeats)."""
    stems, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def write_labelled(cfg: CfgNode, result: DemoResult, out_dir: str, gif: bool, max_side: int) -> List[str]:
    """Labelled copies of the queries in `out_dir` (see the module docstring); returns their paths."""
    paths = []
    for i, (video, stem) in enumerate(zip(result.queries.videos, _output_names(result.queries.videos))):
        path = os.path.join(out_dir, f"{stem}.{'gif' if gif else 'mp4'}")
        fps = open_any(video, cfg).fps or cfg.DATA.TARGET_FPS
        frames = labelled_frames(cfg, video, _caption(result, i), max_side)
        if gif:
            write_gif(path, list(frames), fps)
        else:
            write_mp4(path, frames, fps)
        paths.append(path)
    return paths


def render(cfg: CfgNode, result: DemoResult, num_frames: int):
    """The episode's figure: support clips per class, each query in the row of its predicted class."""
    support, queries = result.support, result.queries
    weights = os.path.basename(result.checkpoint) if result.checkpoint else "random weights (no checkpoint)"
    shots = np.bincount(support.labels, minlength=len(result.class_names))
    shot = f"{shots.min()}" if shots.min() == shots.max() else f"{shots.min()}-{shots.max()}"
    title = (f"{cfg.DATA.PATH_PREFIX}: {len(result.class_names)}-way {shot}-shot\n"
             f"{result.head_name} head on {cfg.MODEL.MODEL_NAME}, {weights}")
    titles = [f"{os.path.basename(os.path.normpath(name))}: {_caption(result, i)}"
              for i, name in enumerate(queries.names)]
    return draw_episode([clip_strip(cfg, support, i, num_frames) for i in range(len(support))], support.labels,
                        [clip_strip(cfg, queries, i, num_frames) for i in range(len(queries))], None,
                        result.predictions, result.class_names, title, query_titles=titles)


def save_predictions(result: DemoResult, path: str, labelled: List[str]) -> None:
    record = {"classes": result.class_names, "head": result.head_name, "checkpoint": result.checkpoint,
              "support": [{"video": v, "class": result.class_names[y]}
                          for v, y in zip(result.support.videos, result.support.labels)],
              "queries": [{"video": name, "prediction": result.class_names[p], "labelled": out,
                           "probabilities": dict(zip(result.class_names, probs))}
                          for name, p, out, probs in zip(result.queries.names, result.predictions, labelled,
                                                         result.probabilities.tolist())]}
    with open(path, "w") as f:
        json.dump(record, f, indent=1)


def main(argv: Optional[List[str]] = None) -> DemoResult:
    """Classify the queries, print the table, write the outputs; returns the result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--support", required=True, help="folder of DIR/<class name>/<video>")
    parser.add_argument("--query", required=True, help="video, frame folder, folder of videos or .txt list")
    parser.add_argument("--checkpoint", default="", help="model weights (TEST.CHECKPOINT_FILE_PATH)")
    parser.add_argument("--head", default="", help="few-shot head (HEAD.NAME)")
    parser.add_argument("--out", default="", help="output folder (default OUTPUT_DIR/fewshot_demo)")
    parser.add_argument("--gif", action="store_true", help="write labelled GIFs instead of MP4s")
    parser.add_argument("--frames", type=int, default=4, choices=range(1, 65), metavar="1..64",
                        help="frames shown per clip in the PNG")
    parser.add_argument("--max-side", type=int, default=480, help="longest side of the labelled copies (0: as is)")
    options, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    args = parse_args(rest)
    args.cfg_files = args.cfg_files or [DEFAULT_CFG]
    setup_logging()
    cfg = demo_cfg(load_config(args), options.support, options.checkpoint, options.head)
    result = classify(cfg, videos_from_arg(options.query))
    print(probability_table(result))
    out_dir = options.out or os.path.join(cfg.OUTPUT_DIR, "fewshot_demo")
    os.makedirs(out_dir, exist_ok=True)
    labelled = write_labelled(cfg, result, out_dir, options.gif, options.max_side)
    render(cfg, result, options.frames).savefig(os.path.join(out_dir, EPISODE_PNG), dpi=100)
    save_predictions(result, os.path.join(out_dir, PREDICTIONS_JSON), labelled)
    print(f"wrote {len(labelled)} labelled {'GIF' if options.gif else 'MP4'}s, {EPISODE_PNG} and "
          f"{PREDICTIONS_JSON} to {out_dir}")
    return result


if __name__ == "__main__":
    main()
