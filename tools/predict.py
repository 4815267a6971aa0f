"""Label your own videos with a supervised classifier: the top-k classes of each whole video, or of
sliding windows over a long video.

    python tools/predict.py --checkpoint model.pyth [--topk 5] [--window SEC --stride SEC] [--out DIR] \
        VIDEO [VIDEO ...] --cfg configs/EPIC-KITCHENS/SLOWFAST_8x8_R50.yaml [KEY VALUE ...]

(`--cfg` comes last: everything after its yaml files is a KEY VALUE override.) A VIDEO is a video file,
a frame folder, a folder of them or a .txt list of them (`video_folder.videos_from_arg`).

A video (or window) is scored as the multi-view test scores a clip: the config's temporal sampling and
test transform, TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS views, their MODEL.HEAD_ACT scores
combined by DATA.ENSEMBLE_METHOD ("sum" is reported as the mean over the views, so softmax scores stay
probabilities). A model with verb and noun heads (MODEL.NUM_CLASSES [97, 300]) gets the top-k of both.
Class names come from TRAIN.DATASET's DATA.TRAIN_SPLIT (EPIC's verb/noun class files, EgoToy's, a class
folder tree's) when it can be read; otherwise classes are shown by index.

Written to --out (default OUTPUT_DIR/predict): `predictions.json`, {"checkpoint", "topk", "videos": [...]}
with per video {"video", "num_frames", "fps", and "predictions": {task: [{"class_id", "class", "score"}]}
(whole videos) or "windows": [{"start", "end", "predictions"}] (seconds)}; with --window also
`windows.csv`, one row per window, task and rank: video, start, end, task, rank, class_id, class, score,
failed. A video that cannot be read is listed with `failed` (the reason) and the others go on.

Weights: --checkpoint, else the config's test checkpoint (TEST.CHECKPOINT_FILE_PATH, OUTPUT_DIR's last,
TRAIN.CHECKPOINT_FILE_PATH), loaded strictly as testing loads it. Without one predict.py refuses to run
(a random model's predictions are meaningless) unless --random-weights is given.
"""
import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import build_dataset, loader
from ego_fsar.datasets.clip import ClipSource
from ego_fsar.datasets.utils import DecodeError
from ego_fsar.datasets.video_folder import videos_from_arg
from ego_fsar.datasets.video_windows import VideoWindows, frame_rate, probe_video, sliding_windows
from ego_fsar.engine.common import progress
from ego_fsar.engine.tester import build_test_model, class_scores
from ego_fsar.models.heads.classification import ResNetBasicHead
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.logging import get_logger
from ego_fsar.utils.video_meter import VideoEnsemble
from ego_fsar.utils.metrics import SINGLE_TASK
from ego_fsar.utils.parser import load_config, parse_args, positive_int

logger = get_logger(__name__)

CSV_COLUMNS = ("video", "start", "end", "task", "rank", "class_id", "class", "score", "failed")


def task_name(task: str) -> str:
    """How a task is named in the outputs: "verb", "noun", or "class" for a single head."""
    return "class" if task == SINGLE_TASK else task


@dataclass
class WindowResult:
    """A scored clip of a video (frames clip.start .. clip.start + clip.num_frames - 1), its seconds
    [start, end), the top classes per task ({task: [{"class_id", "class", "score"}]}) or why it could
    not be read."""

    clip: ClipSource
    start: float
    end: float
    top: Dict[str, List[Dict]] = field(default_factory=dict)
    failed: str = ""


@dataclass
class VideoResult:
    """One video given: its length (frames) and frame rate (DATA.TARGET_FPS for a frame folder), its
    windows (one for a whole video), or why it could not be read."""

    video: str
    num_frames: int = 0
    fps: float = 0.0
    windows: List[WindowResult] = field(default_factory=list)
    failed: str = ""


def model_tasks(cfg: CfgNode) -> Dict[str, int]:
    """{output key: number of classes}: {"logits": K}, or {"verb": 97, "noun": 300} for a list
    MODEL.NUM_CLASSES (the classification head's sub-heads)."""
    counts = cfg.MODEL.NUM_CLASSES
    if isinstance(counts, (list, tuple)):
        return dict(zip(ResNetBasicHead.SUBHEADS, counts))
    return {SINGLE_TASK: counts}


def dataset_class_names(cfg: CfgNode) -> List[str]:
    """`class_names` of TRAIN.DATASET's DATA.TRAIN_SPLIT, else of TEST.DATASET's TEST.SPLIT (e.g. when the
    training dataset also needs teacher files that are not here); [] when neither can be read."""
    errors = []
    for name, split in ((cfg.TRAIN.DATASET, cfg.DATA.TRAIN_SPLIT), (cfg.TEST.DATASET, cfg.TEST.SPLIT)):
        try:
            return list(build_dataset(name, cfg, split).class_names)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            errors.append(f"{name}, split {split}: {e}")
    logger.warning("no class names (classes are shown by index): %s", "; ".join(errors))
    return []


def task_class_names(cfg: CfgNode, tasks: Dict[str, int]) -> Dict[str, List[str]]:
    """{task: name of each class} (`dataset_class_names`, with DATA.EPIC_LABEL set to the task for
    verb/noun heads); a class past the names the dataset gives is named by its index."""
    names = {}
    for task, count in tasks.items():
        data_cfg = cfg.clone()
        if task != SINGLE_TASK:
            data_cfg.DATA.EPIC_LABEL = task
        known = dataset_class_names(data_cfg)
        if 0 < len(known) < count:
            logger.warning("TRAIN.DATASET %s names %d %s classes, the model has %d: the others are shown by index",
                           cfg.TRAIN.DATASET, len(known), task_name(task), count)
        names[task] = [known[i] if i < len(known) else str(i) for i in range(count)]
    return names


def load_model(cfg: CfgNode, random_weights: bool = False) -> Tuple[torch.nn.Module, Optional[str]]:
    """The model of `cfg` in eval mode with the test checkpoint (strict, as testing) and that checkpoint's
    path; SystemExit when there is none, unless `random_weights` (path None)."""
    path, _, _ = cu.find_test_checkpoint(cfg)
    if path is None and not random_weights:
        raise SystemExit("predict.py: no checkpoint: give --checkpoint FILE (a randomly initialised model's "
                         "predictions are meaningless), or --random-weights to run one anyway")
    seed_everything(cfg.RNG_SEED)
    model, _ = build_test_model(cfg)
    if hasattr(du.unwrap(model), "fewshot_head"):
        raise SystemExit(f"predict.py labels videos with a classifier; MODEL.MODEL_NAME {cfg.MODEL.MODEL_NAME} "
                         f"classifies few-shot episodes: use tools/fewshot_demo.py")
    return model.eval(), path


def expand_videos(args: Sequence[str]) -> List[str]:
    """The videos named by each argument (folders and .txt lists expanded); a path that does not exist
    is kept, to be reported as failed."""
    return [video for arg in args for video in (videos_from_arg(arg) if os.path.exists(arg) else [arg])]


def video_windows(cfg: CfgNode, videos: Sequence[str], window: Optional[float],
                  stride: Optional[float]) -> List[VideoResult]:
    """Each video with its windows (the whole video without `window`); unreadable ones marked failed."""
    results = []
    for path in videos:
        try:
            source = probe_video(path, cfg)
        except DecodeError as e:
            logger.warning("skipping an unreadable video: %s", e)
            results.append(VideoResult(path, failed=str(e)))
            continue
        fps = frame_rate(source, cfg)
        clips = [source] if window is None else sliding_windows(source, window, stride, cfg)
        results.append(VideoResult(path, source.num_frames, fps, [
            WindowResult(c, c.start / fps, (c.start + c.num_frames) / fps) for c in clips]))
    return results


@torch.no_grad()
def window_scores(cfg: CfgNode, model: torch.nn.Module, dataset: VideoWindows,
                  tasks: Dict[str, int]) -> Dict[str, torch.Tensor]:
    """{task: scores [num windows, C]}: each window's views' scores combined by DATA.ENSEMBLE_METHOD (a
    sum as the mean over its views); NaN rows for windows none of whose views could be read."""
    views = dataset.num_views
    ensembles = {task: VideoEnsemble(dataset.num_clips, views, count, cfg.DATA.ENSEMBLE_METHOD, False)
                 for task, count in tasks.items()}
    device = device_for(cfg)
    for batch in progress(loader.construct_loader(cfg, dataset.split, dataset), "predict"):
        if "inputs" not in batch:
            continue
        scores = class_scores(model, batch["inputs"], list(tasks), cfg, device)
        clip_ids = batch["index"] * views
        for task, ensemble in ensembles.items():
            ensemble.update(scores[task], torch.zeros(len(clip_ids), dtype=torch.long), clip_ids)
    scale = 1.0 / views if cfg.DATA.ENSEMBLE_METHOD == "sum" else 1.0
    return {task: ensemble.scores() * scale for task, ensemble in ensembles.items()}


def top_classes(scores: torch.Tensor, names: Sequence[str], k: int) -> List[Dict]:
    """The `k` best classes of scores [C], best first: [{"class_id", "class", "score"}]."""
    values, ids = scores.topk(min(k, scores.numel()))
    return [{"class_id": int(i), "class": names[int(i)], "score": round(float(v), 6)} for v, i in zip(values, ids)]


def predict(cfg: CfgNode, model: torch.nn.Module, videos: Sequence[str], topk: int = 5,
            window: Optional[float] = None, stride: Optional[float] = None) -> List[VideoResult]:
    """Top-`topk` classes of each video (or of each of its windows of `window` s every `stride` s) by
    `model` (in eval mode)."""
    tasks = model_tasks(cfg)
    results = video_windows(cfg, videos, window, stride)
    windows = [w for r in results for w in r.windows]
    if not windows:
        return results
    names = task_class_names(cfg, tasks)
    scores = window_scores(cfg, model, VideoWindows(cfg, [w.clip for w in windows]), tasks)
    for i, w in enumerate(windows):
        if torch.isnan(scores[next(iter(tasks))][i]).all():
            w.failed = "no view of the window could be read"
            logger.warning("%s, frames %d..%d: no view could be read", w.clip.path, w.clip.start,
                           w.clip.start + w.clip.num_frames - 1)
            continue
        w.top = {task_name(t): top_classes(scores[t][i], names[t], topk) for t in tasks}
    return results


def _window_json(w: WindowResult) -> Dict:
    entry = {"predictions": w.top}
    if w.failed:
        entry["failed"] = w.failed
    return entry


def to_json(results: Sequence[VideoResult], checkpoint: Optional[str], topk: int, windows: bool) -> Dict:
    """The json record (see the module doc): per video its predictions, or its windows' with --window."""
    videos = []
    for r in results:
        entry = {"video": r.video}
        if r.failed:
            entry["failed"] = r.failed
        elif windows:
            entry.update(num_frames=r.num_frames, fps=r.fps,
                         windows=[dict(start=round(w.start, 3), end=round(w.end, 3), **_window_json(w))
                                  for w in r.windows])
        else:
            entry.update(num_frames=r.num_frames, fps=r.fps, **_window_json(r.windows[0]))
        videos.append(entry)
    return {"checkpoint": checkpoint, "topk": topk, "videos": videos}


def csv_rows(results: Sequence[VideoResult]) -> List[Dict]:
    """Rows of CSV_COLUMNS: one per window, task and rank; one with `failed` per unreadable video or window."""
    rows = []
    for r in results:
        if r.failed:
            rows.append({"video": r.video, "failed": r.failed})
        for w in r.windows:
            where = {"video": r.video, "start": f"{w.start:.3f}", "end": f"{w.end:.3f}"}
            if w.failed:
                rows.append(dict(where, failed=w.failed))
            rows += [dict(where, task=task, rank=rank, **c) for task, top in w.top.items()
                     for rank, c in enumerate(top, start=1)]
    return rows


def segments(windows: Sequence[WindowResult], task: str) -> List[Tuple[float, float, str, float]]:
    """(start, end, class, mean score) of each run of consecutive windows with the same top-1 class of
    `task` (an unreadable window ends a run)."""
    runs: List[List] = []
    previous = None
    for w in windows:
        best = w.top[task][0] if w.top else None
        if best is not None and previous is not None and best["class_id"] == previous["class_id"]:
            runs[-1][1] = w.end
            runs[-1][3].append(best["score"])
        elif best is not None:
            runs.append([w.start, w.end, best["class"], [best["score"]]])
        previous = best
    return [(start, end, name, sum(scores) / len(scores)) for start, end, name, scores in runs]


def format_results(results: Sequence[VideoResult], window: Optional[float], stride: Optional[float]) -> str:
    """Text report: each video's top-k per task, or with `window` its runs of windows sharing a top-1 class."""
    lines = []
    for r in results:
        if r.failed:
            lines.append(f"{r.video}: FAILED: {r.failed}")
            continue
        head = f"{r.video} ({r.num_frames} frames, {r.num_frames / r.fps:.2f} s)"
        if window is not None:
            head += f": {len(r.windows)} windows of {window:g} s every {stride:g} s"
        lines.append(head)
        failed = [w for w in r.windows if w.failed]
        if failed:
            lines.append(f"  {len(failed)} windows FAILED: {failed[0].failed}")
        tasks = next((list(w.top) for w in r.windows if w.top), [])
        for task in tasks:
            if window is None:
                top = r.windows[0].top[task]
                lines.append(f"  {task}: " + ", ".join(f"{c['class']} {c['score']:.3f}" for c in top))
            else:
                lines.append(f"  {task}: " + "; ".join(f"{a:.2f}-{b:.2f} s {name} ({score:.3f})"
                                                       for a, b, name, score in segments(r.windows, task)))
    return "\n".join(lines)


def write_outputs(out_dir: str, record: Dict, rows: Optional[List[Dict]]) -> List[str]:
    """predictions.json (and windows.csv when `rows` is given) in `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "predictions.json")]
    with open(paths[0], "w") as f:
        json.dump(record, f, indent=1)
    if rows is not None:
        paths.append(os.path.join(out_dir, "windows.csv"))
        with open(paths[1], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, restval="")
            writer.writeheader()
            writer.writerows(rows)
    return paths


def main(argv: Optional[List[str]] = None) -> Dict:
    """Predict, print the report, write the outputs; returns the json record."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("videos", nargs="*", metavar="VIDEO",
                        help="video files, frame folders, folders of them or .txt lists (give them before --cfg)")
    parser.add_argument("--cfg", dest="cfg_files", nargs="+", required=True,
                        help="yaml config, optionally followed by KEY VALUE overrides (give it last)")
    parser.add_argument("--checkpoint", default="", help="weights to load (default: the config's test checkpoint)")
    parser.add_argument("--random-weights", action="store_true",
                        help="run a randomly initialised model when there is no checkpoint (for trying the tool)")
    parser.add_argument("--topk", type=positive_int, default=5, help="classes listed per video or window")
    parser.add_argument("--window", type=float, default=None, help="seconds per sliding window")
    parser.add_argument("--stride", type=float, default=None, help="seconds between windows (default: --window)")
    parser.add_argument("--out", default="", help="output folder (default: OUTPUT_DIR/predict)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.videos:
        raise SystemExit("predict.py: no VIDEO given (give the videos before --cfg: everything after its yaml "
                         "files is a KEY VALUE override)")
    if args.stride is not None and args.window is None:
        raise SystemExit("predict.py: --stride needs --window")
    stride = args.window if args.stride is None else args.stride
    if args.window is not None and not 0 < stride <= args.window:
        raise SystemExit(f"predict.py: need 0 < --stride ({stride}) <= --window ({args.window}): windows must "
                         f"cover the whole video")
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise SystemExit(f"predict.py: --checkpoint {args.checkpoint}: no such file")
    cfg = load_config(parse_args(["--cfg", *args.cfg_files]))
    if args.checkpoint:
        cfg.TEST.CHECKPOINT_FILE_PATH = args.checkpoint
    model, checkpoint = load_model(cfg, args.random_weights)
    results = predict(cfg, model, expand_videos(args.videos), args.topk, args.window, stride)
    windowed = args.window is not None
    record = to_json(results, checkpoint, args.topk, windowed)
    paths = write_outputs(args.out or os.path.join(cfg.OUTPUT_DIR, "predict"), record,
                          csv_rows(results) if windowed else None)
    print(format_results(results, args.window, stride))
    print(f"weights: {checkpoint or 'random'}; wrote {', '.join(paths)}")
    return record


if __name__ == "__main__":
    main()
