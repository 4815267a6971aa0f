"""Writes EgoToy (the clips of egotoy_render) in EPIC-Kitchens-100's on-disk layout.

Each "video" holds many consecutive clips as segments. Files under `root`:

    P01/rgb_frames/P01_01/frame_0000000001.jpg     frames (1-based, 10 digits)
    P01/videos/P01_01.MP4                          the same frames as H.264 (`write_videos`)
    P01/flow_frames/P01_01/{u,v}/frame_0000000001.jpg   exact flow from frame i to i + 1 (`write_flow`;
                                                   grey 128 + flow * 127.5 / FLOW_BOUND, EPIC's coding;
                                                   one flow frame per RGB frame)
    P01/pose/P01_01.json                           glyph keypoints per frame (`write_pose`): {"keypoints":
                                                   names, "frame_size": [height, width], "frames":
                                                   [frames][keypoints][x, y] in pixels}
    annotations/EgoToy_{train,val,test,fewshot_val}.csv   EPIC-100's 15 columns
    annotations/EgoToy_{verb,noun}_classes.csv, EgoToy_video_info.csv

Everything written is a function of `seed` and the size arguments, byte for byte on one machine with
the same library versions (NumPy, Pillow, scikit-image, PyAV's FFmpeg and x264); other CPUs or versions
may round pixels and encode videos differently.
"""
import csv
import itertools
import json
import os
import shutil
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..utils.video_writer import write_mp4 as write_video  # noqa: F401 (public name)
from .egotoy_render import (DIGIT_NAMES, KEYPOINTS, PRIMITIVES, SOURCE, TARGET, ClipRender, Domain, Renderer,
                            SplitSpec, class_name, class_pairs, split_specs)
from .epickitchens import EPIC_COLUMNS

PREFIX = "EgoToy"
FLOW_BOUND = 20.0  # flow JPEGs map [-FLOW_BOUND, FLOW_BOUND] pixels to [0, 255] (EPIC's TV-L1 frames)


def _timestamp(seconds: float, decimals: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:02d}:{minutes:02d}:{secs:0{3 + decimals}.{decimals}f}"


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _annotation_row(video_id: str, participant: str, position: int, num_frames: int, fps: int,
                    pair: Tuple[int, int], class_id: int, digit: int) -> list:
    """EPIC-100 row of the `position`-th clip of a video."""
    start, stop = position * num_frames + 1, (position + 1) * num_frames
    verb, noun = class_name(pair), DIGIT_NAMES[digit]
    return [f"{video_id}_{position}", participant, video_id, _timestamp((start - 1) / fps, 3),
            _timestamp((start - 1) / fps, 2), _timestamp((stop - 1) / fps, 2), start, stop,
            f"move {PRIMITIVES[pair[0]]} then {PRIMITIVES[pair[1]]}", verb, class_id, noun, digit,
            f"['{noun}']", f"[{digit}]"]


def _write_frames(folder: str, frames: np.ndarray) -> None:
    """Frames [N,H,W,3] (RGB) or [N,H,W] (grey) as frame_0000000001.jpg, ... in `folder`."""
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(os.path.join(folder, f"frame_{i:010d}.jpg"), quality=90)


def _flow_to_uint8(flow: np.ndarray) -> np.ndarray:
    return np.clip(np.round(128 + flow * (127.5 / FLOW_BOUND)), 0, 255).astype(np.uint8)


def _write_video_files(root: str, participant: str, video_id: str, renders: List[ClipRender], fps: int,
                       write_videos: bool, write_flow: bool, write_pose: bool) -> int:
    """RGB frames (and video, flow frames, keypoints) of one video; returns its number of frames."""
    frames = np.concatenate([r.frames for r in renders])
    _write_frames(os.path.join(root, participant, "rgb_frames", video_id), frames)
    if write_videos:
        os.makedirs(os.path.join(root, participant, "videos"), exist_ok=True)
        write_video(os.path.join(root, participant, "videos", video_id + ".MP4"), frames, fps)
    if write_flow:
        flow = _flow_to_uint8(np.concatenate([r.flow() for r in renders]))
        for axis, name in enumerate("uv"):
            _write_frames(os.path.join(root, participant, "flow_frames", video_id, name), flow[..., axis])
    if write_pose:
        os.makedirs(os.path.join(root, participant, "pose"), exist_ok=True)
        points = np.concatenate([r.keypoints() for r in renders]).round(3).tolist()
        with open(os.path.join(root, participant, "pose", video_id + ".json"), "w") as f:
            json.dump({"keypoints": KEYPOINTS, "frame_size": list(frames.shape[1:3]), "frames": points}, f)
    return len(frames)


@dataclass(frozen=True)
class ClipJob:
    """One clip to render: its motion pair, domain, class id, the seed of its RNG and, optionally,
    a narration replacing the default one in its annotation row."""

    pair: Tuple[int, int]
    domain: Domain
    class_id: int
    rng_seed: Tuple[int, ...]
    narration: Optional[str] = None


def write_clips(root: str, jobs: Sequence[ClipJob], renderer: Renderer, video_ids: Iterator[Tuple[str, str]],
                fps: int, clips_per_video: int, write_videos: bool, write_flow: bool, write_pose: bool
                ) -> Tuple[List[List], List[Tuple]]:
    """Render `jobs` in order into videos of up to `clips_per_video` consecutive clips under `root`
    (EPIC layout; `video_ids` yields each video's (participant, video id)). Returns the EPIC
    annotation rows and the video-info rows."""
    rows, video_rows = [], []
    for first in range(0, len(jobs), clips_per_video):
        participant, video_id = next(video_ids)
        renders = []
        for job in jobs[first:first + clips_per_video]:
            renders.append(renderer.render(job.pair, job.domain, np.random.default_rng(list(job.rng_seed))))
            row = _annotation_row(video_id, participant, len(renders) - 1, renderer.num_frames, fps, job.pair,
                                  job.class_id, renders[-1].digit)
            if job.narration is not None:
                row[EPIC_COLUMNS.index("narration")] = job.narration
            rows.append(row)
        num = _write_video_files(root, participant, video_id, renders, fps, write_videos, write_flow, write_pose)
        video_rows.append((video_id, f"{num / fps:.6f}", fps, f"{renderer.size}x{renderer.size}"))
    return rows, video_rows


def _write_class_files(ann_dir: str, pairs: List[Tuple[int, int]], specs: List[SplitSpec]) -> None:
    """EgoToy_verb_classes.csv (category: the first split with the class) and EgoToy_noun_classes.csv
    (category: the domain), with EPIC's columns id, key, instances, category."""
    split_of: Dict[int, str] = {}
    for spec in specs:
        for c in spec.class_ids:
            split_of.setdefault(c, spec.name)
    verbs = [(i, class_name(p), f"['{class_name(p)}']", split_of[i]) for i, p in enumerate(pairs)]
    nouns = [(d, name, f"['{name}']", SOURCE.name if d in SOURCE.digits else TARGET.name)
             for d, name in enumerate(DIGIT_NAMES)]
    header = ("id", "key", "instances", "category")
    write_csv(os.path.join(ann_dir, f"{PREFIX}_verb_classes.csv"), header, verbs)
    write_csv(os.path.join(ann_dir, f"{PREFIX}_noun_classes.csv"), header, nouns)


def _numbered_videos(domain: Domain, counts: Dict[str, int]) -> Iterator[Tuple[str, str]]:
    """(participant, video id) of the next videos of `domain`: participants in turn, each numbering its
    own videos from 01 (`counts` carries the numbers across splits)."""
    for video_no in itertools.count():
        participant = domain.participants[video_no % len(domain.participants)]
        counts[participant] = counts.get(participant, 0) + 1
        yield participant, f"{participant}_{counts[participant]:02d}"


def make_egotoy(root: str, seed: int = 0, size: int = 64, num_frames: int = 16, fps: int = 30,
                source_pairs: int = 12, test_pairs: int = 6, fewshot_val_pairs: int = 3,
                clips: Tuple[int, int, int, int] = (30, 8, 24, 20), clips_per_video: int = 32,
                write_videos: bool = True, write_flow: bool = False, write_pose: bool = False,
                overwrite: bool = False) -> Dict[str, int]:
    """Write EgoToy under `root` (see the module doc); returns the number of clips per split.

    `clips` are the clips per class of train, val, test and fewshot_val; each video holds up to
    `clips_per_video` clips. The default (1,320 clips of 16 64x64 frames) takes well under a minute.
    Optional extras: H.264 videos, exact optical flow frames, glyph keypoints. An existing non-empty
    `root` is an error, or is deleted first with `overwrite`."""
    if os.path.isdir(root) and os.listdir(root):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty: remove it or choose another folder")
        shutil.rmtree(root)
    pairs = class_pairs(source_pairs, test_pairs, fewshot_val_pairs)
    specs = split_specs(source_pairs, test_pairs, fewshot_val_pairs, clips)
    renderer = Renderer(size, num_frames)
    ann_dir = os.path.join(root, "annotations")
    os.makedirs(ann_dir, exist_ok=True)
    video_counts: Dict[str, int] = {}
    video_rows, counts = [], {}
    for split_no, spec in enumerate(specs):
        order_rng = np.random.default_rng([seed, split_no])
        jobs = [c for c in spec.class_ids for _ in range(spec.clips_per_class)]
        jobs = [jobs[i] for i in order_rng.permutation(len(jobs))]
        clip_jobs = [ClipJob(pairs[c], spec.domain, c, (seed, split_no, clip_no)) for clip_no, c in enumerate(jobs)]
        rows, split_video_rows = write_clips(root, clip_jobs, renderer, _numbered_videos(spec.domain, video_counts),
                                             fps, clips_per_video, write_videos, write_flow, write_pose)
        video_rows += split_video_rows
        write_csv(os.path.join(ann_dir, f"{PREFIX}_{spec.name}.csv"), EPIC_COLUMNS, rows)
        counts[spec.name] = len(rows)
    _write_class_files(ann_dir, pairs, specs)
    write_csv(os.path.join(ann_dir, f"{PREFIX}_video_info.csv"), ("video_id", "duration", "fps", "resolution"),
               video_rows)
    return counts
