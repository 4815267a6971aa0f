"""EgoToy's unlabelled target pool (MM-CDFSL's `<target>_unlabel` clips), written beside an EgoToy.

`write_unlabelled_pool(root, ...)` renders `clips_per_class` new target-domain clips of every target class
(test and fewshot_val) with the same renderer, in videos of their own (`P05_u01`, ...), and writes
`annotations/EgoToy_unlabelled.csv` (EPIC's columns; the true classes are kept in the file for analysis,
the `EgoToyUnlabelled` dataset hides them) and appends the videos to `EgoToy_video_info.csv`. Nothing that
`make_egotoy` wrote changes otherwise: its splits, frames and videos keep their bytes. Clip i is drawn from
`[seed, 4, i]` (the four EgoToy splits use 0-3). Call it with the size arguments given to `make_egotoy`.
"""
import csv
import itertools
import os
from typing import Iterator, Tuple

import numpy as np

from .egotoy_render import TARGET, Renderer, class_pairs, split_specs
from .egotoy_writer import PREFIX, ClipJob, write_csv, write_clips
from .epickitchens import EPIC_COLUMNS

UNLABELLED_SPLIT = "unlabelled"
_SPLIT_NO = 4


def _pool_videos() -> Iterator[Tuple[str, str]]:
    """(participant, video id) of the pool's videos: target participants in turn, `<participant>_uNN`."""
    for video_no in itertools.count():
        participant = TARGET.participants[video_no % len(TARGET.participants)]
        yield participant, f"{participant}_u{video_no // len(TARGET.participants) + 1:02d}"


def write_unlabelled_pool(root: str, seed: int = 0, size: int = 64, num_frames: int = 16, fps: int = 30,
                          source_pairs: int = 12, test_pairs: int = 6, fewshot_val_pairs: int = 3,
                          clips: Tuple[int, int, int, int] = (30, 8, 24, 20), clips_per_class: int = 20,
                          clips_per_video: int = 32, write_videos: bool = True, write_flow: bool = False,
                          write_pose: bool = False) -> int:
    """Write the pool under the EgoToy at `root` (see the module doc); returns its number of clips."""
    ann_dir = os.path.join(root, "annotations")
    path = os.path.join(ann_dir, f"{PREFIX}_{UNLABELLED_SPLIT}.csv")
    if not os.path.isdir(ann_dir) or os.path.exists(path):
        raise FileExistsError(f"{root} must hold an EgoToy without an unlabelled pool ({path})")
    pairs = class_pairs(source_pairs, test_pairs, fewshot_val_pairs)
    specs = split_specs(source_pairs, test_pairs, fewshot_val_pairs, clips)
    class_ids = [c for spec in specs if spec.domain is TARGET for c in spec.class_ids]
    jobs = [c for c in class_ids for _ in range(clips_per_class)]
    jobs = [jobs[i] for i in np.random.default_rng([seed, _SPLIT_NO]).permutation(len(jobs))]
    clip_jobs = [ClipJob(pairs[c], TARGET, c, (seed, _SPLIT_NO, clip_no)) for clip_no, c in enumerate(jobs)]
    rows, video_rows = write_clips(root, clip_jobs, Renderer(size, num_frames), _pool_videos(), fps, clips_per_video,
                                   write_videos, write_flow, write_pose)
    write_csv(path, EPIC_COLUMNS, rows)
    with open(os.path.join(ann_dir, f"{PREFIX}_video_info.csv"), "a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(video_rows)
    return len(rows)

