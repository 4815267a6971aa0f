"""EgoToy: a small, deterministic, cross-domain few-shot action data set, written in EPIC-Kitchens-100's
on-disk layout, and its dataset class.

A handwritten digit (scikit-learn's bundled digits) moves over a photo or texture (scikit-image's
bundled images) seen by a shaking camera. An action is an ordered pair of motion primitives, the
first in the first half of the clip and the second in the second half: "left then up" differs from
"up then left", so temporal order matters. The two domains differ in digits, backgrounds, glyph
colours and camera shake:

    split         domain  classes                        participants  use
    train         source  24 (12 pairs, both orders)     P01-P04       supervised pre-training
    val           source  the same 24, other clips       P01-P04       supervised validation
    test          target  12 (6 pairs, both orders)      P05-P08       few-shot test episodes
    fewshot_val   target  6 (3 pairs, both orders)       P05-P08       few-shot validation episodes

Class ids are global (source 0-23, test 24-35, fewshot_val 36-41): `verb_class` is the action,
`noun_class` the digit. Each "video" holds many consecutive clips as segments. Files under `root`:

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
import math
import os
import shutil
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import av
import numpy as np
from fvcore.common.config import CfgNode
from PIL import Image

from .build import DATASET_REGISTRY
from .epickitchens import EPIC_COLUMNS, EpicKitchens
from .pose import Keypoints
from .utils import DecodeError

# Motion primitives: (dx, dy, turn, zoom) in units of 0.28 frame widths, 100 degrees clockwise and a
# factor 1.6 in size, each scaled by a random amount in [0.8, 1.2] per clip.
MOTIONS = {"left": (-1, 0, 0, 0), "right": (1, 0, 0, 0), "up": (0, -1, 0, 0), "down": (0, 1, 0, 0),
           "rotate-cw": (0, 0, 1, 0), "rotate-ccw": (0, 0, -1, 0), "grow": (0, 0, 0, 1), "shrink": (0, 0, 0, -1)}
PRIMITIVES = tuple(MOTIONS)
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PREFIX = "EgoToy"
DEFAULT_ROOT = os.path.join("data", "egotoy")
# The unordered primitive pairs in a fixed order (independent of the seed): the first ones are the
# source classes, then the test classes, then the few-shot validation classes.
_PAIR_ORDER = np.random.default_rng(2024).permutation(len(PRIMITIVES) * (len(PRIMITIVES) - 1) // 2)


@dataclass(frozen=True)
class Domain:
    """What a domain's clips look like: digits, backgrounds, glyph colours (one of the two farthest from
    the background's mean colour), camera shake amplitude (fraction of the frame) and participants."""

    name: str
    digits: Tuple[int, ...]
    backgrounds: Tuple[str, ...]
    colours: Tuple[Tuple[int, int, int], ...]
    shake: float
    participants: Tuple[str, ...]


SOURCE = Domain("source", (0, 1, 2, 3, 4), ("astronaut", "coffee", "chelsea", "rocket", "camera"),
                ((255, 60, 40), (255, 210, 0), (255, 120, 200), (250, 250, 210)), 0.015,
                ("P01", "P02", "P03", "P04"))
TARGET = Domain("target", (5, 6, 7, 8, 9), ("brick", "grass", "gravel", "hubble_deep_field",
                                            "immunohistochemistry", "moon"),
                ((0, 220, 255), (70, 255, 120), (120, 120, 255), (210, 90, 255)), 0.05,
                ("P05", "P06", "P07", "P08"))


@dataclass(frozen=True)
class SplitSpec:
    """A split: its domain, its action classes (global ids) and the clips per class."""

    name: str
    domain: Domain
    class_ids: Tuple[int, ...]
    clips_per_class: int


def class_pairs(source_pairs: int = 12, test_pairs: int = 6, fewshot_val_pairs: int = 3) -> List[Tuple[int, int]]:
    """Ordered primitive pairs by class id: each unordered pair gives two classes, (a, b) then (b, a)."""
    unordered = list(itertools.combinations(range(len(PRIMITIVES)), 2))
    total = source_pairs + test_pairs + fewshot_val_pairs
    if total > len(unordered):
        raise ValueError(f"at most {len(unordered)} primitive pairs exist, asked for {total}")
    return [p for i in _PAIR_ORDER[:total] for p in (unordered[i], unordered[i][::-1])]


def class_name(pair: Tuple[int, int]) -> str:
    return f"{PRIMITIVES[pair[0]]}-then-{PRIMITIVES[pair[1]]}"


def split_specs(source_pairs: int = 12, test_pairs: int = 6, fewshot_val_pairs: int = 3,
                clips: Tuple[int, int, int, int] = (30, 8, 24, 20)) -> List[SplitSpec]:
    """train / val / test / fewshot_val with `clips` clips per class respectively."""
    bounds = np.cumsum([0, 2 * source_pairs, 2 * test_pairs, 2 * fewshot_val_pairs])
    source, test, fs_val = (tuple(range(bounds[i], bounds[i + 1])) for i in range(3))
    return [SplitSpec("train", SOURCE, source, clips[0]), SplitSpec("val", SOURCE, source, clips[1]),
            SplitSpec("test", TARGET, test, clips[2]), SplitSpec("fewshot_val", TARGET, fs_val, clips[3])]


# ----------------------------------------------------------------------------------------------- #
# Rendering
# ----------------------------------------------------------------------------------------------- #
_GLYPH = 32  # side of the upscaled digit, in mask pixels
_PAD = 8  # border around it, so rotations stay inside the mask
_MID = _PAD + _GLYPH / 2  # the glyph's centre in mask coordinates
KEYPOINTS = ("centre", "top_left", "top_right", "bottom_right", "bottom_left")
_KEYPOINTS_MASK = np.array([[_MID, _MID], [_PAD, _PAD], [_PAD + _GLYPH, _PAD], [_PAD + _GLYPH, _PAD + _GLYPH],
                            [_PAD, _PAD + _GLYPH]], np.float64)
FLOW_BOUND = 20.0  # flow JPEGs map [-FLOW_BOUND, FLOW_BOUND] pixels to [0, 255] (EPIC's TV-L1 frames)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


@dataclass
class ClipRender:
    """A rendered clip of `digit`: frames uint8 [T,S,S,3], the glyph's opacity [T,S,S], and per frame
    the glyph's screen centre (x, y), angle (radians, clockwise on screen), side in pixels, and the
    camera offset (x, y). Screen coordinates have (0, 0) at the top-left corner of the frame."""

    digit: int
    frames: np.ndarray
    alpha: np.ndarray
    centre: np.ndarray
    angle: np.ndarray
    side: np.ndarray
    camera: np.ndarray

    def _linear(self, t: int) -> np.ndarray:
        """The 2x2 rotation and scale taking mask offsets to screen offsets in frame t."""
        cos, sin = math.cos(self.angle[t]), math.sin(self.angle[t])
        return np.array([[cos, -sin], [sin, cos]]) * self.side[t] / _GLYPH

    def glyph_to_screen(self, t: int, points: np.ndarray) -> np.ndarray:
        """Mask coordinates [N,2] of the glyph -> screen coordinates [N,2] in frame t."""
        return self.centre[t] + (points - _MID) @ self._linear(t).T

    def screen_to_glyph(self, t: int, points: np.ndarray) -> np.ndarray:
        """Screen coordinates [N,2] in frame t -> the glyph's mask coordinates [N,2]."""
        return _MID + (points - self.centre[t]) @ np.linalg.inv(self._linear(t)).T

    def keypoints(self) -> np.ndarray:
        """Screen positions [T,5,2] of the glyph's KEYPOINTS."""
        return np.stack([self.glyph_to_screen(t, _KEYPOINTS_MASK) for t in range(len(self.frames))])

    def flow(self) -> np.ndarray:
        """Exact forward optical flow [T,S,S,2] (x, y) from frame t to t + 1: the glyph's motion where
        it covers a pixel (opacity > 0.5), the camera's elsewhere; zero for the last frame."""
        num_frames, size = self.frames.shape[:2]
        ys, xs = np.mgrid[0:size, 0:size]
        pixels = np.stack([xs.ravel(), ys.ravel()], 1) + 0.5
        flow = np.zeros((num_frames, size, size, 2), np.float32)
        for t in range(num_frames - 1):
            glyph = self.glyph_to_screen(t + 1, self.screen_to_glyph(t, pixels)) - pixels
            camera = np.broadcast_to(self.camera[t] - self.camera[t + 1], glyph.shape)
            on_glyph = self.alpha[t].ravel()[:, None] > 0.5
            flow[t] = np.where(on_glyph, glyph, camera).reshape(size, size, 2)
        return flow


class Renderer:
    """Draws clips of one size and length; loads the digit images and backgrounds once."""

    def __init__(self, size: int = 64, num_frames: int = 16):
        from sklearn.datasets import load_digits

        if num_frames < 4:
            raise ValueError(f"EgoToy clips need at least 4 frames, got {num_frames}")
        self.size, self.num_frames = size, num_frames
        digits = load_digits()
        self._digits = {d: digits.images[digits.target == d] for d in range(10)}
        self._backgrounds: Dict[str, np.ndarray] = {}

    def background(self, name: str) -> np.ndarray:
        """Bundled scikit-image picture `name` as RGB, its short side scaled to 4 frame sizes."""
        if name not in self._backgrounds:
            import skimage.data

            image = getattr(skimage.data, name)()
            image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
            pil = Image.fromarray(image)
            scale = 4 * self.size / min(pil.size)
            pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.BILINEAR)
            self._backgrounds[name] = np.asarray(pil)
        return self._backgrounds[name]

    def _glyph_mask(self, digit: int, rng: np.random.Generator) -> Image.Image:
        """A random handwritten `digit`, upscaled to a smooth mask of _GLYPH + 2 * _PAD pixels."""
        samples = self._digits[digit]
        image = Image.fromarray((samples[rng.integers(len(samples))] * 16).clip(0, 255).astype(np.uint8))
        mask = Image.new("L", (_GLYPH + 2 * _PAD,) * 2)
        mask.paste(image.resize((_GLYPH, _GLYPH), Image.BICUBIC), (_PAD, _PAD))
        return mask

    def _motion(self, pair: Tuple[int, int], rng: np.random.Generator) -> Tuple[np.ndarray, ...]:
        """Glyph centre offsets [T,2], angles [T] and sides [T] of primitive pair `pair`."""
        size, t = self.size, np.arange(self.num_frames) / (self.num_frames - 1)
        phases = (_smoothstep(2 * t), _smoothstep(2 * t - 1))
        offset, angle, log_scale = np.zeros((self.num_frames, 2)), np.zeros(self.num_frames), np.zeros(self.num_frames)
        for primitive, u in zip(pair, phases):
            dx, dy, turn, zoom = np.array(MOTIONS[PRIMITIVES[primitive]]) * rng.uniform(0.8, 1.2)
            offset += np.outer(u, (dx, dy)) * 0.28 * size
            angle += u * turn * math.radians(100)
            log_scale += u * zoom * math.log(1.6)
        side = min(rng.uniform(0.30, 0.38) * size, 0.55 * size / math.exp(log_scale.max()))
        return offset, angle + rng.uniform(-0.25, 0.25), side * np.exp(log_scale)

    def _camera(self, amplitude: float, limit: int, rng: np.random.Generator) -> np.ndarray:
        """Camera offsets [T,2] in whole pixels within +-limit: two random sinusoids per axis plus jitter."""
        t = np.arange(self.num_frames)[:, None]
        waves = sum(weight * np.sin(2 * np.pi * rng.uniform(0.5, 3.0, 2) * t / self.num_frames
                                    + rng.uniform(0, 2 * np.pi, 2)) for weight in (0.6, 0.4))
        shake = amplitude * (waves + 0.3 * rng.standard_normal((self.num_frames, 2)))
        return np.clip(np.round(shake), -limit, limit).astype(np.int64)

    def render(self, pair: Tuple[int, int], domain: Domain, rng: np.random.Generator) -> ClipRender:
        """One clip of action `pair` in `domain`."""
        size = self.size
        offset, angle, side = self._motion(pair, rng)
        radius = 0.5 * side * 1.2
        low = np.max(radius[:, None] - offset, axis=0) - 0.1 * size
        high = np.min(size - radius[:, None] - offset, axis=0) + 0.1 * size
        start = np.where(low <= high, rng.uniform(np.minimum(low, high), np.maximum(low, high)), (low + high) / 2)
        margin = math.ceil(2 * domain.shake * size) + 1
        camera = self._camera(domain.shake * size, margin, rng)
        centre = start + offset - camera
        digit = int(rng.choice(domain.digits))
        mask = self._glyph_mask(digit, rng)
        crop = self._background_crop(domain, size + 2 * margin, rng)
        colour = self._colour(domain, crop, rng)
        frames = np.empty((self.num_frames, size, size, 3), np.uint8)
        alpha = np.empty((self.num_frames, size, size), np.float32)
        for i in range(self.num_frames):
            x, y = margin + camera[i]
            view = crop[y:y + size, x:x + size]
            glyph = mask.transform((size, size), Image.AFFINE, self._glyph_affine(centre[i], angle[i], side[i]),
                                   resample=Image.BILINEAR)
            alpha[i] = np.asarray(glyph, np.float32) / 255.0
            frames[i] = np.round(view * (1 - alpha[i, ..., None]) + colour * alpha[i, ..., None]).astype(np.uint8)
        return ClipRender(digit, frames, alpha, centre, angle, side, camera)

    @staticmethod
    def _colour(domain: Domain, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One of the two domain colours farthest from the background's mean colour, slightly jittered."""
        palette = np.array(domain.colours, np.float64)
        far = np.argsort(-np.linalg.norm(palette - background.reshape(-1, 3).mean(0), axis=1))[:2]
        return np.clip(palette[far[rng.integers(2)]] + rng.integers(-25, 26, 3), 0, 255)

    def _background_crop(self, domain: Domain, side: int, rng: np.random.Generator) -> np.ndarray:
        """A random square of a random background of `domain`, resized to side x side."""
        image = self.background(domain.backgrounds[rng.integers(len(domain.backgrounds))])
        extent = int(rng.uniform(1.2, 2.5) * self.size)
        y, x = rng.integers(image.shape[0] - extent + 1), rng.integers(image.shape[1] - extent + 1)
        crop = Image.fromarray(image[y:y + extent, x:x + extent])
        return np.asarray(crop.resize((side, side), Image.BILINEAR))

    @staticmethod
    def _glyph_affine(centre: np.ndarray, angle: float, side: float) -> Tuple[float, ...]:
        """PIL's inverse affine (screen -> mask) placing the mask's glyph at `centre`, turned by `angle`."""
        scale = _GLYPH / side
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        return (cos, sin, _MID - cos * centre[0] - sin * centre[1],
                -sin, cos, _MID + sin * centre[0] - cos * centre[1])


# ----------------------------------------------------------------------------------------------- #
# Writing
# ----------------------------------------------------------------------------------------------- #
def _timestamp(seconds: float, decimals: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:02d}:{minutes:02d}:{secs:0{3 + decimals}.{decimals}f}"


def _write_video(path: str, frames: np.ndarray, fps: int) -> None:
    """Frames [N,H,W,3] (RGB) as H.264 in MP4, the same bytes for the same frames: one encoder thread and
    no macroblock-tree rate control (x264's default; with its assembly it gave different bytes for the
    same frames from one call to the next, x264 core 165)."""
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
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
        _write_video(os.path.join(root, participant, "videos", video_id + ".MP4"), frames, fps)
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
    _write_csv(os.path.join(ann_dir, f"{PREFIX}_verb_classes.csv"), header, verbs)
    _write_csv(os.path.join(ann_dir, f"{PREFIX}_noun_classes.csv"), header, nouns)


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
        rows = []
        for video_no, first in enumerate(range(0, len(jobs), clips_per_video)):
            participant = spec.domain.participants[video_no % len(spec.domain.participants)]
            video_counts[participant] = video_counts.get(participant, 0) + 1
            video_id = f"{participant}_{video_counts[participant]:02d}"
            renders = []
            for clip_no, class_id in enumerate(jobs[first:first + clips_per_video], start=first):
                clip_rng = np.random.default_rng([seed, split_no, clip_no])
                renders.append(renderer.render(pairs[class_id], spec.domain, clip_rng))
                rows.append(_annotation_row(video_id, participant, len(renders) - 1, num_frames, fps, pairs[class_id],
                                            class_id, renders[-1].digit))
            num = _write_video_files(root, participant, video_id, renders, fps, write_videos, write_flow, write_pose)
            video_rows.append((video_id, f"{num / fps:.6f}", fps, f"{size}x{size}"))
        _write_csv(os.path.join(ann_dir, f"{PREFIX}_{spec.name}.csv"), EPIC_COLUMNS, rows)
        counts[spec.name] = len(rows)
    _write_class_files(ann_dir, pairs, specs)
    _write_csv(os.path.join(ann_dir, f"{PREFIX}_video_info.csv"), ("video_id", "duration", "fps", "resolution"),
               video_rows)
    return counts


@dataclass(frozen=True)
class KeypointFile:
    """The keypoints of one EgoToy video (`P01/pose/P01_01.json`)."""

    path: str

    def read(self, indices: Sequence[int]) -> Keypoints:
        """Keypoints of the video's frames `indices` (0-based)."""
        try:
            with open(self.path) as f:
                record = json.load(f)
            points = np.asarray(record["frames"], dtype=np.float32)
            frame_size = tuple(record["frame_size"])
        except (OSError, ValueError, KeyError) as e:
            raise DecodeError(self.path, f"cannot read keypoints: {e!r}") from e
        indices = np.asarray(indices, dtype=np.int64)
        if points.ndim != 3 or points.shape[-1] != 2 or not 0 <= indices.min() <= indices.max() < len(points):
            raise DecodeError(self.path, f"expected keypoints [frames,K,2] covering frames {indices.min()}.."
                                         f"{indices.max()}, got shape {points.shape}")
        return Keypoints(points[indices], frame_size)


@DATASET_REGISTRY.register()
class EgoToy(EpicKitchens):
    """EgoToy through the EPIC-Kitchens reader. DATA.PATH_PREFIX defaults to data/egotoy and
    DATA.PATH_TO_DATA_DIR to its annotations folder; splits: train, val, test, fewshot_val. Optical
    flow and pose (the glyph's KEYPOINTS) when written with `write_flow` / `write_pose`."""

    ANNOTATION_PREFIX = PREFIX
    SPLIT_FILES: Dict[str, str] = {}

    def __init__(self, cfg: CfgNode, split: str):
        super().__init__(cfg, split)
        if self.training and cfg.DATA.RANDOM_FLIP:
            raise ValueError("EgoToy's actions change under a horizontal flip (left/right, clockwise/"
                             "anticlockwise): set DATA.RANDOM_FLIP False")

    @classmethod
    def data_paths(cls, cfg: CfgNode) -> Tuple[str, str]:
        root = cfg.DATA.PATH_PREFIX or DEFAULT_ROOT
        annotations = cfg.DATA.PATH_TO_DATA_DIR or os.path.join(root, "annotations")
        if not os.path.isdir(annotations):
            raise FileNotFoundError(f"EgoToy annotations not found in {annotations!r}: write the data set with "
                                    f"`python tools/make_egotoy.py --out {root}`")
        return annotations, root

    def flow_stride(self, video_id: str) -> int:
        """One flow frame per RGB frame."""
        return 1

    def pose_frames(self, clip: int) -> KeypointFile:
        s = self.segments[clip]
        return KeypointFile(os.path.join(self.frames_root, s.participant_id, "pose", s.video_id + ".json"))
