"""Labelled copies of videos: frames scaled down, a caption drawn across the top of every frame, and
frames written as H.264 MP4 (PyAV) or animated GIF (PIL). Frames are uint8 RGB arrays [H,W,3]."""
from fractions import Fraction
from typing import Iterable, Sequence, Tuple

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

# Caption band: fraction of the frame height used as font size (at least MIN_FONT px), its opacity.
FONT_FRACTION, MIN_FONT, BAND_ALPHA = 1 / 12, 8, 0.6


def fit_frames(frames: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 frames [T,H,W,3] scaled (bilinear, antialiased) so that max(H, W) <= `max_side`; unchanged
    when they already fit or `max_side` <= 0."""
    height, width = frames.shape[1:3]
    scale = max_side / max(height, width)
    if max_side <= 0 or scale >= 1:
        return frames
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _caption_mask(text: str, width: int, height: int) -> np.ndarray:
    """Float [h, width] in [0, 1]: `text` rendered white on black in a band h <= height pixels high, with
    the largest font (up to FONT_FRACTION of `height`) whose text fits the width."""
    size = max(MIN_FONT, round(height * FONT_FRACTION))
    while True:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = font.getbbox(text)
        if right - left <= width - size // 2 or size <= MIN_FONT:
            break
        size -= 1
    pad = max(2, size // 4)
    band = Image.new("L", (width, min(height, bottom - top + 2 * pad)), 0)
    ImageDraw.Draw(band).text((pad - left, pad - top), text, fill=255, font=font)
    return np.asarray(band, dtype=np.float32) / 255.0


def caption_frames(frames: np.ndarray, text: str, colour: Tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A copy of uint8 frames [T,H,W,3] with `text` in `colour` on a translucent black band across the top
    of every frame (the band is as high as the text; the text shrinks to fit the width)."""
    mask = _caption_mask(text, frames.shape[2], frames.shape[1])[None, :, :, None]
    out = frames.copy()
    band = out[:, :mask.shape[1]].astype(np.float32) * (1.0 - BAND_ALPHA)
    band = band * (1.0 - mask) + np.asarray(colour, dtype=np.float32) * mask
    out[:, :mask.shape[1]] = band.round().clip(0, 255).astype(np.uint8)
    return out


def write_mp4(path: str, frames: Iterable[np.ndarray], fps: float) -> None:
    """Frames [H,W,3] (RGB, all one size, cropped to even H and W as yuv420p needs) as H.264 in MP4 at
    `fps`, the same bytes for the same frames: one encoder thread and no macroblock-tree rate control
    (x264's default; with its assembly it gave different bytes for the same frames from one call to the
    next, x264 core 165)."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    height, width = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate.numerator if rate.denominator == 1 else rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        for frame in (first, *frames):
            image = np.ascontiguousarray(frame[:height, :width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def write_gif(path: str, frames: Sequence[np.ndarray], fps: float) -> None:
    """Frames [H,W,3] (RGB) as an animated GIF looping forever, each shown 1/fps s (GIF stores
    hundredths of a second; PIL merges consecutive identical frames, adding up their durations). Each
    frame gets its own 256-colour palette by fast octree quantisation (PIL's default median cut is ~40x
    slower)."""
    images = [Image.fromarray(np.asarray(frame)).quantize(method=Image.Quantize.FASTOCTREE) for frame in frames]
    if not images:
        raise ValueError(f"{path}: no frames to write")
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0)
