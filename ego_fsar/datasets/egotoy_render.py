"""EgoToy's clips: what they look like, their classes, domains and splits.

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
`noun_class` the digit. `Renderer` draws a clip with its exact optical flow and glyph keypoints;
egotoy_writer writes the data set to disk.
"""
import itertools
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

# Motion primitives: (dx, dy, turn, zoom) in units of 0.28 frame widths, 100 degrees clockwise and a
# factor 1.6 in size, each scaled by a random amount in [0.8, 1.2] per clip.
MOTIONS = {"left": (-1, 0, 0, 0), "right": (1, 0, 0, 0), "up": (0, -1, 0, 0), "down": (0, 1, 0, 0),
           "rotate-cw": (0, 0, 1, 0), "rotate-ccw": (0, 0, -1, 0), "grow": (0, 0, 0, 1), "shrink": (0, 0, 0, -1)}
PRIMITIVES = tuple(MOTIONS)
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
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
