"""EgoToy narrations in EgoVLP's formats: an EgoClip TSV over mp4 chunks and an EgoMCQ JSON.

The clips are EgoToy's (egotoy_render: its renderer, source domain and class pairs), narrated as
"#C C moves the <digit> <first motion> then <second motion>", with the two motion primitives as verbs
(vocabulary: egotoy_render.PRIMITIVES, 8) and the digit as noun (egotoy_render.DIGIT_NAMES, 10). Files under `root`:

    videos/<video_uid>/<chunk>.mp4        each video cut into chunks of `chunk_sec` seconds
    annotations/egoclip.csv               EgoClip TSV of the train clips (egoclip.EGOCLIP_COLUMNS)
    annotations/egomcq.json               EgoMCQ questions over the val clips: one per clip, the query is
                                          its narration, the four other choices carry other narrations,
                                          from other videos (type 1, inter-video) or the same one (type 2)

The train and val clips are those of EgoToy's train and val split specs (other clips of the same
classes); the standard EgoToy files (make_egotoy) are not touched. A function of `seed` and the sizes.
"""
import csv
import json
import os
import shutil
from typing import Dict, List, Tuple

import numpy as np

from .egoclip import EGOCLIP_COLUMNS
from .egotoy_render import DIGIT_NAMES, PRIMITIVES, Renderer, class_pairs, split_specs
from .egotoy_writer import write_video
from .egomcq import INTER_VIDEO, INTRA_VIDEO

NUM_CHOICES = 5


def narration(pair: Tuple[int, int], digit: int) -> str:
    return f"#C C moves the {DIGIT_NAMES[digit]} {PRIMITIVES[pair[0]]} then {PRIMITIVES[pair[1]]}"


def _write_chunks(folder: str, frames: np.ndarray, fps: int, chunk_frames: int) -> None:
    os.makedirs(folder, exist_ok=True)
    for chunk, first in enumerate(range(0, len(frames), chunk_frames)):
        write_video(os.path.join(folder, f"{chunk}.mp4"), frames[first:first + chunk_frames], fps)


def _clip_record(video_uid: str, position: int, num_frames: int, fps: int, pair, digit: int, duration: float) -> Dict:
    start = position * num_frames / fps
    return {"video_uid": video_uid, "video_dur": round(duration, 6), "narration_source": "narration_pass_1",
            "narration_ind": position, "narration_time": round(start + num_frames / fps / 2, 6),
            "clip_start": round(start, 6), "clip_end": round(start + (num_frames - 1) / fps, 6),
            "clip_text": narration(pair, digit), "tag_verb": str(sorted({int(pair[0]), int(pair[1])})),
            "tag_noun": str([int(digit)])}


def _render_split(root: str, spec, split_no: int, pairs, renderer: Renderer, seed: int, fps: int,
                  clips_per_video: int, chunk_frames: int) -> List[Dict]:
    """Render, chunk and write the videos of `spec`; returns one clip record per clip."""
    rng = np.random.default_rng([seed, 100 + split_no])
    jobs = [c for c in spec.class_ids for _ in range(spec.clips_per_class)]
    jobs = [jobs[i] for i in rng.permutation(len(jobs))]
    records = []
    for video_no, first in enumerate(range(0, len(jobs), clips_per_video)):
        video_uid = f"egotoy_{spec.name}_{video_no:03d}"
        renders = [renderer.render(pairs[c], spec.domain, np.random.default_rng([seed, 100 + split_no, first + k]))
                   for k, c in enumerate(jobs[first:first + clips_per_video])]
        frames = np.concatenate([r.frames for r in renders])
        _write_chunks(os.path.join(root, "videos", video_uid), frames, fps, chunk_frames)
        records += [_clip_record(video_uid, k, renderer.num_frames, fps, pairs[c], r.digit, len(frames) / fps)
                    for k, (c, r) in enumerate(zip(jobs[first:first + clips_per_video], renders))]
    return records


def _choice(record: Dict) -> Dict:
    return {k: record[k] for k in ("video_uid", "clip_start", "clip_end", "clip_text")}


def mcq_questions(records: List[Dict], seed: int) -> Dict[str, Dict]:
    """One question per clip of `records`, alternately inter- and intra-video (the other type when the
    first cannot find four distractors with other narrations); clips with neither are left out."""
    rng = np.random.default_rng([seed, 999])
    questions: Dict[str, Dict] = {}
    for i, query in enumerate(records):
        others = [r for r in records if r["clip_text"] != query["clip_text"]]
        pools = {INTRA_VIDEO: [r for r in others if r["video_uid"] == query["video_uid"]]}
        by_video: Dict[str, List[Dict]] = {}
        for r in others:
            if r["video_uid"] != query["video_uid"]:
                by_video.setdefault(r["video_uid"], []).append(r)
        pools[INTER_VIDEO] = [clips[rng.integers(len(clips))] for clips in by_video.values()]
        for kind in ((INTER_VIDEO, INTRA_VIDEO) if i % 2 == 0 else (INTRA_VIDEO, INTER_VIDEO)):
            if len(pools[kind]) >= NUM_CHOICES - 1:
                picks = rng.choice(len(pools[kind]), NUM_CHOICES - 1, replace=False)
                choices = [pools[kind][p] for p in picks]
                answer = int(rng.integers(NUM_CHOICES))
                choices.insert(answer, query)
                questions[str(len(questions))] = {
                    "query": _choice(query), "choices": {str(k): _choice(c) for k, c in enumerate(choices)},
                    "answer": answer, "types": kind}
                break
    return questions


def make_egotoy_egoclip(root: str, seed: int = 0, size: int = 64, num_frames: int = 16, fps: int = 30,
                        source_pairs: int = 12, clips: Tuple[int, int] = (30, 8), clips_per_video: int = 32,
                        chunk_sec: float = 4.0, overwrite: bool = False) -> Dict[str, int]:
    """Write the EgoClip / EgoMCQ files of EgoToy under `root` (see the module doc): `clips` train and val
    clips per class of the `source_pairs` * 2 source classes. Returns the counts of train clips and MCQ
    questions. An existing non-empty `root` is an error, or is deleted first with `overwrite`."""
    if os.path.isdir(root) and os.listdir(root):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty: remove it or choose another folder")
        shutil.rmtree(root)
    pairs = class_pairs(source_pairs, 0, 0)
    train, val = split_specs(source_pairs, 0, 0, (clips[0], clips[1], 0, 0))[:2]
    renderer = Renderer(size, num_frames)
    chunk_frames = round(chunk_sec * fps)
    if chunk_frames < 1 or abs(chunk_frames - chunk_sec * fps) > 1e-6:
        raise ValueError(f"chunk_sec * fps must be a whole number of frames, got {chunk_sec} * {fps}")
    ann = os.path.join(root, "annotations")
    os.makedirs(ann, exist_ok=True)
    train_records = _render_split(root, train, 0, pairs, renderer, seed, fps, clips_per_video, chunk_frames)
    with open(os.path.join(ann, "egoclip.csv"), "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(EGOCLIP_COLUMNS)
        writer.writerows([i] + [r[c] for c in EGOCLIP_COLUMNS[1:]] for i, r in enumerate(train_records))
    val_records = _render_split(root, val, 1, pairs, renderer, seed, fps, clips_per_video, chunk_frames)
    questions = mcq_questions(val_records, seed)
    with open(os.path.join(ann, "egomcq.json"), "w") as f:
        json.dump(questions, f)
    return {"egoclip": len(train_records), "egomcq": len(questions)}
