"""`train`: seconds per training step (the trainer's own `run_step`: forward, loss, backward, optimizer
step with its checks) of the configured model on random inputs of the configured clip size, in the default
memory layout and channels-last 3D, in fp32 and with bf16 autocast (run when the device supports bf16
natively, or with --amp yes), and with --compile MODEL.COMPILE (torch.compile) in fp32. `--compare SlowFast`
on a SUML config also times the plain SlowFast step on clips of the same shapes and prints SUML's step time
as a multiple of it; `--compare-pyslowfast PATH` times PySlowFast's SlowFast against ours (see `pyslowfast`).
The data time of the configured training loader is printed against the first row's step time (`loading`)."""
import argparse
import statistics
from typing import Callable, Dict, List, Optional, Tuple

import torch
from fvcore.common.config import CfgNode

from ego_fsar.engine.protocols import get_protocol
from ego_fsar.engine.step import run_step
from ego_fsar.engine.trainer import build_train_model
from ego_fsar.models.build import MODEL_REGISTRY
from ego_fsar.models.freeze import freeze_norm_statistics
from ego_fsar.models.heads.classification import ResNetBasicHead
from ego_fsar.models.losses import build_loss
from ego_fsar.models.stats import clip_shapes
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.metrics import Labels
from ego_fsar.utils.parser import positive_int

from . import pyslowfast
from .loading import data_line
from .report import bf16_support, device_line, format_table
from .timing import rate, timed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `bench_train`."""
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="clips per step (default TRAIN.BATCH_SIZE)")
    parser.add_argument("--steps", type=positive_int, default=3, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--amp", choices=("auto", "yes", "no"), default="auto",
                        help="bf16 autocast rows: auto (where bf16 is native), yes, no")
    parser.add_argument("--compare", default="", metavar="MODEL_NAME",
                        help="also time this MODEL.MODEL_NAME on clips of the same shapes and print the "
                             "step-time ratio (e.g. SlowFast against a SUML config)")
    parser.add_argument("--compare-pyslowfast", default="", metavar="PATH",
                        help="a PySlowFast checkout: time its SlowFast against ours (same weights and input, "
                             "fp32, both layouts, train step and inference, interleaved); skipped when absent")
    parser.add_argument("--compile", action="store_true",
                        help="also time MODEL.COMPILE True (torch.compile; its first step, the compilation, apart)")
    parser.add_argument("--data-batches", type=int, default=3,
                        help="training-loader batches timed for the data time against the step time (0: none)")


def synthetic_labels(cfg: CfgNode, batch_size: int) -> Labels:
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
    """A random FEW_SHOT.WAY-way episode (`batch_size` is unused: an episode's size is its shots and
    queries)."""
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


def step_seconds(cfg: CfgNode, batch: Dict, warmup: int, steps: int,
                 warmup_times: Optional[List[float]] = None) -> Tuple[List[float], str]:
    """Times of `steps` training steps (`run_step`, as `train_epoch` runs them, after `warmup` ones, whose
    times are appended to `warmup_times` when given: MODEL.COMPILE compiles in the first) and the autocast
    dtype used."""
    seed_everything(cfg.RNG_SEED)
    model, optimizer, scaler, policy, device = build_train_model(cfg)
    protocol = get_protocol(cfg)
    criterion = build_loss(cfg)
    model.train()
    freeze_norm_statistics(model)

    def step(cur_iter: int) -> None:
        run_step(model, batch, criterion, optimizer, scaler, policy, device, protocol, cfg, cur_iter=cur_iter)

    first = [timed(step, cur_iter, device=device)[0] for cur_iter in range(warmup)]
    times = [timed(step, warmup + i, device=device)[0] for i in range(steps)]
    if warmup_times is not None:
        warmup_times.extend(first)
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(policy.dtype, "fp32")
    return times, precision


def bench_train(cfg: CfgNode, options: argparse.Namespace) -> str:
    """The report of the training step's time per memory layout and precision."""
    batch_size = options.batch_size or cfg.TRAIN.BATCH_SIZE
    get_protocol(cfg)  # names the valid protocols when TRAIN.PROTOCOL is unknown
    batch, batch_text = SYNTHETIC_BATCHES[cfg.TRAIN.PROTOCOL](cfg, batch_size)
    native_bf16, support_line = bf16_support(device_for(cfg))
    amp_modes = [False] + ([True] if options.amp == "yes" or (options.amp == "auto" and native_bf16) else [])
    rows, base = [], None
    variants = [(amp, channels_last, False) for amp in amp_modes for channels_last in (False, True)]
    variants += [(False, cfg.TRAIN.CHANNELS_LAST, True)] if options.compile else []
    for amp, channels_last, compiled in variants:
        run_cfg = cfg.clone()
        run_cfg.TRAIN.CHANNELS_LAST, run_cfg.TRAIN.MIXED_PRECISION = channels_last, amp
        run_cfg.TRAIN.BATCH_SIZE, run_cfg.LOG_MODEL_INFO, run_cfg.MODEL.COMPILE = batch_size, False, compiled
        first: List[float] = []
        times, precision = step_seconds(run_cfg, batch, max(options.warmup, 1) if compiled else options.warmup,
                                        options.steps, first)
        median = statistics.median(times)
        base = base or median
        layout = "channels-last 3d" if channels_last else "default"
        rows.append({"layout": layout + (", compiled" if compiled else ""), "precision": precision,
                     "s/step": f"{median:.3f}", "min s/step": f"{min(times):.3f}",
                     "steps/s": rate(1, median), "speed-up": f"{base / median:.2f}x",
                     "first step s": f"{first[0]:.2f}" if first else ""})
    shapes = " + ".join("x".join(map(str, s)) for s in clip_shapes(cfg))
    header = [f"train step: {cfg.MODEL.MODEL_NAME} ({cfg.MODEL.ARCH}), TRAIN.PROTOCOL {cfg.TRAIN.PROTOCOL}, "
              f"{batch_text} of {shapes} (C x T x H x W); median of {options.steps} timed steps after {options.warmup} "
              f"warm-up",
              device_line(cfg), support_line]
    table = format_table(rows, ("layout", "precision", "s/step", "min s/step", "steps/s", "speed-up", "first step s"))
    if options.compare:
        table = "\n".join([table, "", _compare_line(cfg, options, batch_size, base)])
    if options.data_batches > 0:
        data_cfg = cfg.clone()
        data_cfg.TRAIN.BATCH_SIZE = batch_size
        table = "\n".join([table, "", data_line(data_cfg, options.data_batches, base)])
    if options.compare_pyslowfast:
        table = "\n".join([table, "", pyslowfast.compare_line(cfg, options, batch)])
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
    times, _ = step_seconds(other, batch, options.warmup, options.steps)
    median = statistics.median(times)
    return (f"{options.compare} step (default layout, fp32): {median:.3f} s; {cfg.MODEL.MODEL_NAME} / "
            f"{options.compare} = {seconds / median:.2f}x")
