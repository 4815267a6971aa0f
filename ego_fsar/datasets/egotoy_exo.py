"""EgoToy's exo (third-person) twin, for SUM-L and Ego-Exo on the demo data.

For every clip of EgoToy's training split, `make_egotoy_exo` renders the same action of the same
digit seen by a fixed camera (no shake) with another glyph style (the `EXO` palette), and writes
these clips as a second data set in EPIC-Kitchens-100's layout under `<egotoy root>/exo`
(annotations `EgoToyExo_train.csv`, class files, frames `X01/rgb_frames/X01_01/...`). Its
narrations read "<digit> moves <first> then <second>" (the ego clips': "move <first> then
<second>"). EgoToy's own files are not touched. Exo tags: one verb (the action) and one noun (the
digit), in EgoToy's ids, so the taxonomy map is the identity.
"""
import csv
import itertools
import os
import shutil
from dataclasses import replace
from typing import Iterator, List, Tuple

from fvcore.common.config import CfgNode

from .build import DATASET_REGISTRY
from .egotoy import DEFAULT_ROOT, EgoToy
from .egotoy_render import DIGIT_NAMES, PRIMITIVES, SOURCE, Domain, Renderer
from .egotoy_writer import PREFIX, ClipJob, write_csv, write_clips
from .epickitchens import EPIC_COLUMNS

EXO_PREFIX = "EgoToyExo"
EXO_DIR = "exo"
# The exo view: source backgrounds, other glyph colours, a fixed camera.
EXO = Domain("exo", SOURCE.digits, SOURCE.backgrounds, ((40, 40, 40), (0, 90, 255), (255, 255, 255), (20, 160, 60)),
             0.0, ("X01", "X02"))


def _pair_of(verb_name: str) -> Tuple[int, int]:
    first, second = verb_name.split("-then-")
    return PRIMITIVES.index(first), PRIMITIVES.index(second)


def exo_narration(pair: Tuple[int, int], digit: int) -> str:
    return f"{DIGIT_NAMES[digit]} moves {PRIMITIVES[pair[0]]} then {PRIMITIVES[pair[1]]}"


def _exo_videos() -> Iterator[Tuple[str, str]]:
    """(participant, video id) of the exo videos: participants in turn, videos numbered from 01."""
    for video_no in itertools.count():
        participant = EXO.participants[video_no % len(EXO.participants)]
        yield participant, f"{participant}_{video_no + 1:02d}"


def make_egotoy_exo(root: str, seed: int = 0, size: int = 64, num_frames: int = 16, fps: int = 30,
                    clips_per_video: int = 32, overwrite: bool = False) -> int:
    """Write the exo twin of `root`'s training clips under `root/exo`; returns the number of clips.
    `size`, `num_frames` and `fps` must be those EgoToy was written with."""
    out = os.path.join(root, EXO_DIR)
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty: remove it or pass overwrite")
        shutil.rmtree(out)
    ann = os.path.join(root, "annotations")
    with open(os.path.join(ann, f"{PREFIX}_train.csv"), newline="") as f:
        ego_rows = list(csv.DictReader(f))
    exo_ann = os.path.join(out, "annotations")
    os.makedirs(exo_ann, exist_ok=True)
    jobs = []
    for clip_no, ego in enumerate(ego_rows):
        pair, digit = _pair_of(ego["verb"]), int(ego["noun_class"])
        jobs.append(ClipJob(pair, replace(EXO, digits=(digit,)), int(ego["verb_class"]), (seed, 100, clip_no),
                            exo_narration(pair, digit)))
    rows, video_rows = write_clips(out, jobs, Renderer(size, num_frames), _exo_videos(), fps, clips_per_video,
                                   False, False, False)
    write_csv(os.path.join(exo_ann, f"{EXO_PREFIX}_train.csv"), EPIC_COLUMNS, rows)
    write_csv(os.path.join(exo_ann, f"{EXO_PREFIX}_video_info.csv"), ("video_id", "duration", "fps", "resolution"),
               video_rows)
    for kind in ("verb", "noun"):
        shutil.copyfile(os.path.join(ann, f"{PREFIX}_{kind}_classes.csv"),
                        os.path.join(exo_ann, f"{EXO_PREFIX}_{kind}_classes.csv"))
    return len(rows)


def _count_classes(path: str) -> int:
    with open(path, newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


@DATASET_REGISTRY.register()
class EgoToyExo(EgoToy):
    """The exo twin written by `make_egotoy_exo` (split "train"), read like EgoToy from
    `<DATA.PATH_PREFIX or data/egotoy>/exo`. Exo dataset interface (used by SUM-L's pairing):
    `exo_tags(clip)`, `narration(clip)`, `tag_counts` and `annotation_records()`."""

    ANNOTATION_PREFIX = EXO_PREFIX

    @classmethod
    def data_paths(cls, cfg: CfgNode) -> Tuple[str, str]:
        root = os.path.join(cfg.DATA.PATH_PREFIX or DEFAULT_ROOT, EXO_DIR)
        annotations = os.path.join(root, "annotations")
        if not os.path.isdir(annotations):
            raise FileNotFoundError(f"EgoToy's exo twin not found in {root!r}: write it with "
                                    f"`python tools/make_egotoy.py --out {os.path.dirname(root)} --exo`")
        return annotations, root

    def exo_tags(self, clip: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """(verb ids, noun ids) of clip `clip` in the exo taxonomy (here: EgoToy's)."""
        s = self.segments[clip]
        return (s.verb_class,), (s.noun_class,)

    def narration(self, clip: int) -> str:
        return self.segments[clip].narration

    @property
    def tag_counts(self) -> Tuple[int, int]:
        """(exo verb classes, exo noun classes): the exo head's multi-hot is their concatenation."""
        return tuple(_count_classes(self._file(f"{kind}_classes.csv")) for kind in ("verb", "noun"))

    def annotation_records(self) -> List[Tuple[str, int, int]]:
        return [(s.narration_id, s.verb_class, s.noun_class) for s in self.segments]
