"""EgoClip (EgoVLP's Ego4D narration clips): a TSV of narrations over 600-second mp4 chunks.

`DATA.PATH_TO_DATA_DIR/EGOVLP.TRAIN_FILE` is a tab-separated file with a header holding (at least) the
columns of EGOCLIP_COLUMNS; `tag_verb` / `tag_noun` are python lists of vocabulary ids ("[93]",
"[192, 115]"), `clip_start` / `clip_end` seconds in the video. Videos are cut into chunks of
`EGOVLP.CHUNK_SEC` seconds stored as `DATA.PATH_PREFIX/<video_uid>/<chunk>.mp4` (chunk = second //
CHUNK_SEC, as EgoVLP's preprocessing writes them); a clip that spans two chunks reads frames of both.

Frames: `DATA.NUM_FRAMES` per clip, one per equal segment of [clip_start, clip_end] (EgoVLP's "rand"
sampling: a random time in each segment at training, the segment centres otherwise). Item (training
split): `inputs` (pathway list [C,T,H,W]), `text` (narration), `verb_multi_hot` [EGOVLP.NUM_VERBS],
`noun_multi_hot` [EGOVLP.NUM_NOUNS], `index`, `meta`; no `label` (the loss is the model's EgoNCE).
With `EGOVLP.NEG_WINDOW` > 0 an item also holds `negative`: the same entries of one other clip of the
same video starting within NEG_WINDOW seconds (EgoVLP's scene-aware negatives). A malformed row raises
AnnotationError naming the file and line; a missing or unreadable chunk is a DecodeError naming it,
retried and replaced (training) or skipped (evaluation) as in every ego_fsar dataset.
"""
import ast
import csv
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .decoder import DECODER_REGISTRY
from .modalities import transform_modalities
from .utils import AnnotationError, DecodeError, FailureTracker, RetryingDataset, Rng, pack_pathway_output

EGOCLIP_COLUMNS = ("clip_idx", "video_uid", "video_dur", "narration_source", "narration_ind", "narration_time",
                   "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun")


@dataclass(frozen=True)
class Narration:
    """One narrated clip: its video, start and end (seconds), text and verb / noun vocabulary ids."""

    video_uid: str
    start: float
    end: float
    text: str
    verbs: Tuple[int, ...] = ()
    nouns: Tuple[int, ...] = ()


def parse_tags(value: str, size: int, column: str) -> Tuple[int, ...]:
    """Ids of a `tag_verb` / `tag_noun` cell ("[3, 7]"), each checked to lie in 0..size-1."""
    tags = ast.literal_eval(value)
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, int) and 0 <= t < size for t in tags):
        raise ValueError(f"{column} must be a list of ids in 0..{size - 1}, got {value!r}")
    return tuple(tags)


def read_egoclip(path: str, num_verbs: int, num_nouns: int) -> List[Narration]:
    """The narrations of EgoClip TSV `path`; a malformed row raises AnnotationError naming file and line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EgoClip file {path} does not exist (DATA.PATH_TO_DATA_DIR / EGOVLP.TRAIN_FILE)")
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, [])
        missing = [c for c in EGOCLIP_COLUMNS if c not in header]
        if missing:
            raise AnnotationError(f"{path}, line 1: header lacks the EgoClip columns {missing}")
        col = {name: header.index(name) for name in EGOCLIP_COLUMNS}
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                if len(row) != len(header):
                    raise ValueError(f"{len(row)} fields, expected {len(header)}")
                start, end = float(row[col["clip_start"]]), float(row[col["clip_end"]])
                if end < start:
                    raise ValueError(f"clip_end {end} is before clip_start {start}")
                rows.append(Narration(row[col["video_uid"]], max(start, 0.0), max(end, 0.0), row[col["clip_text"]],
                                      parse_tags(row[col["tag_verb"]], num_verbs, "tag_verb"),
                                      parse_tags(row[col["tag_noun"]], num_nouns, "tag_noun")))
            except (ValueError, SyntaxError) as e:
                raise AnnotationError(f"{path}, line {line}: {e}") from None
    return rows


def multi_hot(ids: Sequence[int], size: int) -> torch.Tensor:
    """[size] float tensor with ones at `ids`."""
    out = torch.zeros(size)
    out[list(ids)] = 1.0
    return out


class ChunkedClips:
    """Reads clips of videos stored as `root/<video_uid>/<chunk>.mp4` chunks of `EGOVLP.CHUNK_SEC` seconds."""

    def __init__(self, cfg: CfgNode):
        self.cfg = cfg
        self.root = cfg.DATA.PATH_PREFIX
        self.chunk_sec = cfg.EGOVLP.CHUNK_SEC
        self.reader_class = DECODER_REGISTRY.get(cfg.DATA.DECODING_BACKEND)
        if self.reader_class.FRAME_FOLDER:
            raise ValueError(f"EgoClip reads mp4 chunks: DATA.DECODING_BACKEND must be a video decoder (pyav or "
                             f"decord), got {cfg.DATA.DECODING_BACKEND!r}")

    def chunk_path(self, video_uid: str, chunk: int) -> str:
        return os.path.join(self.root, video_uid, f"{chunk}.mp4")

    def sample_times(self, start: float, end: float, training: bool) -> np.ndarray:
        """DATA.NUM_FRAMES times (seconds) in [start, end]: one per equal segment, random at training, else
        the segment centres."""
        n = self.cfg.DATA.NUM_FRAMES
        offsets = np.random.uniform(0, 1, n) if training else np.full(n, 0.5)
        return start + (np.arange(n) + offsets) * (end - start) / n

    def read(self, video_uid: str, times: np.ndarray) -> np.ndarray:
        """uint8 RGB frames [T,H,W,3] at `times` (seconds), read from the chunks that hold them."""
        chunks = np.floor(times / self.chunk_sec).astype(np.int64)
        frames: List[np.ndarray] = [None] * len(times)
        for chunk in np.unique(chunks):
            path = self.chunk_path(video_uid, int(chunk))
            if not os.path.isfile(path):
                raise DecodeError(path, "video chunk does not exist")
            reader = self.reader_class(path, self.cfg)
            where = np.flatnonzero(chunks == chunk)
            local = np.round((times[where] - chunk * self.chunk_sec) * reader.fps).astype(np.int64)
            last = reader.num_frames - 1
            for i, frame in zip(where, reader.read(np.clip(local, 0, max(last, 0)))):
                frames[i] = frame
        return np.stack(frames)

    def clip(self, video_uid: str, start: float, end: float, training: bool) -> List[torch.Tensor]:
        """Pathway list [C,T,H,W] of the clip [start, end] of `video_uid` (random crop at training, else centre)."""
        frames = self.read(video_uid, self.sample_times(start, end, training))
        rgb = transform_modalities(self.cfg, {"rgb": frames}, -1 if training else 1)["rgb"]
        return pack_pathway_output(self.cfg, rgb)


@DATASET_REGISTRY.register()
class EgoClip(RetryingDataset):
    """EgoClip narrations of `EGOVLP.TRAIN_FILE` (any split name reads it; only the training split draws
    random frames and crops). See the module doc for items and scene-aware negatives."""

    def __init__(self, cfg: CfgNode, split: str):
        self.cfg, self.split = cfg, split
        self.training = split == cfg.DATA.TRAIN_SPLIT
        self.path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, cfg.EGOVLP.TRAIN_FILE)
        self.narrations = read_egoclip(self.path, cfg.EGOVLP.NUM_VERBS, cfg.EGOVLP.NUM_NOUNS)
        if not self.narrations:
            raise AnnotationError(f"{self.path}: no narration rows")
        self.clips = ChunkedClips(cfg)
        self.failures = FailureTracker(cfg.DATA_LOADER.MAX_FAILURES)
        self.neg_window = cfg.EGOVLP.NEG_WINDOW
        by_video: Dict[str, List[int]] = defaultdict(list)
        for i, n in enumerate(self.narrations):
            by_video[n.video_uid].append(i)
        self._by_video = {v: np.asarray(ids) for v, ids in by_video.items()}

    def __len__(self) -> int:
        return len(self.narrations)

    def negative_index(self, index: int, rng: Rng = np.random) -> int:
        """A random other clip of `index`'s video starting within EGOVLP.NEG_WINDOW seconds of it; else any
        other clip of that video; else (a video of one clip) any other clip."""
        anchor = self.narrations[index]
        same = self._by_video[anchor.video_uid]
        same = same[same != index]
        if len(same) == 0:
            return int((index + 1 + rng.randint(len(self) - 1)) % len(self)) if len(self) > 1 else index
        starts = np.array([self.narrations[i].start for i in same])
        near = same[np.abs(starts - anchor.start) <= self.neg_window]
        pool = near if len(near) else same
        return int(pool[rng.randint(len(pool))])

    def _entries(self, index: int) -> Dict:
        n = self.narrations[index]
        return {"inputs": self.clips.clip(n.video_uid, n.start, n.end, self.training), "text": n.text,
                "verb_multi_hot": multi_hot(n.verbs, self.cfg.EGOVLP.NUM_VERBS),
                "noun_multi_hot": multi_hot(n.nouns, self.cfg.EGOVLP.NUM_NOUNS)}

    def load(self, index: int) -> Dict:
        """Item `index` without retries (raises DecodeError on an unreadable chunk)."""
        n = self.narrations[index]
        item = dict(self._entries(index), index=index,
                    meta={"video_uid": n.video_uid, "clip_start": n.start, "clip_end": n.end})
        if self.neg_window > 0:
            item["negative"] = self._entries(self.negative_index(index))
        return item

