"""EgoMCQ (EgoVLP's multiple-choice benchmark): a narration query and five candidate clips.

`DATA.PATH_TO_DATA_DIR/EGOVLP.MCQ_FILE` is a JSON object (or list) of questions
`{"query": {"clip_text", ...}, "choices": {"0": clip, ..., "4": clip}, "answer": i, "types": t}`, where a
clip holds `video_uid`, `clip_start`, `clip_end` (seconds) and type 1 is inter-video (choices from
different videos), 2 intra-video (choices from the query's video). Clips are read from the chunks as
in EgoClip (centre frames and crop). Item: `inputs` (pathway list [K,C,T,H,W], the K choices in
order), `text` (the query narration), `answer`, `type`, `index`, `meta`. A question whose clips cannot
be read is skipped (counted) like any evaluation clip; a malformed question raises AnnotationError
naming the file and the question.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .egoclip import ChunkedClips
from .utils import AnnotationError, FailureTracker, RetryingDataset, read_json

INTER_VIDEO, INTRA_VIDEO = 1, 2


@dataclass(frozen=True)
class Question:
    """An EgoMCQ question: key in the file, query text, choices (video_uid, start, end), answer, type."""

    key: str
    text: str
    choices: Tuple[Tuple[str, float, float], ...]
    answer: int
    type: int


def _clip(record: Dict) -> Tuple[str, float, float]:
    return str(record["video_uid"]), max(float(record["clip_start"]), 0.0), max(float(record["clip_end"]), 0.0)


def _question(key: str, record: Dict) -> Question:
    choices = record["choices"]
    if isinstance(choices, dict):
        choices = [choices[k] for k in sorted(choices, key=int)]
    answer, kind = int(record["answer"]), int(record["types"])
    if not 0 <= answer < len(choices):
        raise ValueError(f"answer {answer} is not one of the {len(choices)} choices")
    if kind not in (INTER_VIDEO, INTRA_VIDEO):
        raise ValueError(f"types must be {INTER_VIDEO} (inter-video) or {INTRA_VIDEO} (intra-video), got {kind}")
    return Question(key, str(record["query"]["clip_text"]), tuple(_clip(c) for c in choices), answer, kind)


def read_egomcq(path: str) -> List[Question]:
    """The questions of EgoMCQ JSON `path`, in file order; each checked (fields, answer, type)."""
    data = read_json(path)
    items = data.items() if isinstance(data, dict) else ((str(i), q) for i, q in enumerate(data))
    questions = []
    for key, record in items:
        try:
            questions.append(_question(key, record))
        except (KeyError, TypeError, ValueError) as e:
            raise AnnotationError(f"{path}, question {key!r}: {type(e).__name__}: {e}") from None
    if not questions:
        raise AnnotationError(f"{path}: no questions")
    if len({len(q.choices) for q in questions}) != 1:
        raise AnnotationError(f"{path}: questions have different numbers of choices")
    return questions


@DATASET_REGISTRY.register()
class EgoMCQ(RetryingDataset):
    """EgoMCQ questions of `EGOVLP.MCQ_FILE` for the EgoMCQ test (TEST.PROTOCOL egomcq); any split name.
    A question with an unreadable clip is skipped (an evaluation dataset: `training` is False)."""

    training = False

    def __init__(self, cfg: CfgNode, split: str):
        self.cfg, self.split = cfg, split
        self.path = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, cfg.EGOVLP.MCQ_FILE)
        self.questions = read_egomcq(self.path)
        self.clips = ChunkedClips(cfg)
        self.failures = FailureTracker(cfg.DATA_LOADER.MAX_FAILURES)

    def __len__(self) -> int:
        return len(self.questions)

    def load(self, index: int) -> Dict:
        """Question `index` without retries (raises DecodeError on an unreadable chunk)."""
        q = self.questions[index]
        clips = [self.clips.clip(video, start, end, training=False) for video, start, end in q.choices]
        return {"inputs": [torch.stack(p) for p in zip(*clips)], "text": q.text, "answer": q.answer,
                "type": q.type, "index": index, "meta": {"question": q.key}}
