"""`train --compare-pyslowfast PATH`: ego_fsar's SlowFast against PySlowFast's own, side by side.

PySlowFast's SlowFast is built from a checkout at PATH (its config defaults merged with its
`configs/Kinetics/SLOWFAST_8x8_R50.yaml`, clip length, crop and class count set to the configured
run's), its weights are copied into ego_fsar's model through the checkpoint key interop
(`convert_state_dict`), and both forward passes are checked to give the same output (the same network).
Then, in fp32 and for each memory layout, the training step (ours: the trainer's `run_step`; theirs:
train_net's forward, cross-entropy, backward, optimizer step from their `construct_optimizer`) and
inference (eval mode, no gradients) run in interleaved repetitions on the same input; the report gives
medians and ours / PySlowFast's time.

The checkout is used as it is. Its `slowfast.models` modules import detectron2 (ROIAlign, detection
heads only) and pytorchvideo (Swish, NaiveSyncBatchNorm, distributed helpers); where those are not
installed, `pyslowfast_imports` puts minimal stand-ins for exactly those names into `sys.modules` while
the modules are imported (a stand-in class raises if it is ever built), and removes them afterwards.
It also imports `slowfast.models.video_model_builder` without `slowfast/models/__init__.py`, which
imports every model family (MViT, contrastive, PyTorchVideo builders). Nothing is installed.
"""
import argparse
import contextlib
import importlib
import importlib.util
import os
import statistics
import sys
import types
from typing import Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from ego_fsar.engine.common import channels_last_3d, inputs_to
from ego_fsar.engine.protocols import get_protocol
from ego_fsar.engine.step import run_step
from ego_fsar.engine.trainer import build_train_model
from ego_fsar.models.losses import build_loss
from ego_fsar.utils.checkpoint_formats import convert_state_dict
from ego_fsar.utils.env import seed_everything

from .report import format_table
from .timing import timed

# PySlowFast's SlowFast R50 recipe, relative to the checkout.
PYSLOWFAST_YAML = os.path.join("configs", "Kinetics", "SLOWFAST_8x8_R50.yaml")

# One timed call (a training step or an inference pass), run by `interleaved_medians`.
Step = Callable[[], object]


def _standin_class(name: str) -> type:
    """A placeholder for a class PySlowFast imports but the compared SlowFast never builds."""
    def fail(*_args, **_kwargs) -> NoReturn:
        raise RuntimeError(f"{name} is a stand-in of ego_fsar.benchmark.pyslowfast (its package is not installed)")
    return type(name.rsplit(".", 1)[-1], (nn.Module,), {"__init__": fail})


class _Swish(nn.Module):
    """x * sigmoid(x) (pytorchvideo.layers.swish.Swish; SlowFast R50 has none, X3D's SE blocks use it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def _standin_modules() -> Dict[str, types.ModuleType]:
    """Stand-ins of the detectron2 / pytorchvideo modules `slowfast.models.video_model_builder` imports
    (the packages themselves, for those not installed)."""
    names: Dict[str, Dict[str, object]] = {
        "detectron2": {}, "detectron2.layers": {"ROIAlign": _standin_class("detectron2.layers.ROIAlign")},
        "pytorchvideo": {}, "pytorchvideo.layers": {},
        "pytorchvideo.layers.swish": {"Swish": _Swish},
        "pytorchvideo.layers.batch_norm": {
            n: _standin_class(f"pytorchvideo.layers.batch_norm.{n}")
            for n in ("NaiveSyncBatchNorm1d", "NaiveSyncBatchNorm3d")},
        "pytorchvideo.layers.distributed": {
            "cat_all_gather": None, "get_local_process_group": lambda: None, "get_local_rank": lambda: 0,
            "get_local_size": lambda: 1, "get_world_size": lambda: 1, "init_distributed_training": None},
    }
    modules = {}
    for name, attributes in names.items():
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            continue
        module = types.ModuleType(name, "stand-in of ego_fsar.benchmark.pyslowfast")
        module.__path__ = []
        module.__dict__.update(attributes)
        modules[name] = module
    return modules


def check_checkout(path: str) -> Optional[str]:
    """None if `path` looks like a PySlowFast checkout, else why not (the skip message)."""
    needed = [os.path.join("slowfast", "models", "video_model_builder.py"), PYSLOWFAST_YAML]
    missing = [n for n in needed if not os.path.isfile(os.path.join(path, n))]
    if missing:
        return (f"--compare-pyslowfast {path}: skipped, not a PySlowFast checkout (missing {', '.join(missing)}; "
                f"git clone https://github.com/facebookresearch/SlowFast)")
    return None


@contextlib.contextmanager
def pyslowfast_imports(path: str) -> Iterator[None]:
    """Make `slowfast.*` of the checkout at `path` importable: the checkout on sys.path, stand-ins for
    missing detectron2 / pytorchvideo modules and an empty `slowfast.models` package (its modules load,
    its __init__ does not run) while the block runs; the stand-ins are removed afterwards."""
    standins = _standin_modules()
    package = types.ModuleType("slowfast.models")
    package.__path__ = [os.path.join(path, "slowfast", "models")]
    added = {**standins, "slowfast.models": package}
    sys.path.insert(0, path)
    sys.modules.update({k: v for k, v in added.items() if k not in sys.modules})
    try:
        yield
    finally:
        sys.path.remove(path)
        for name in standins:
            if sys.modules.get(name) is standins[name]:
                del sys.modules[name]


def build_pyslowfast(path: str, cfg: CfgNode) -> Tuple[nn.Module, Callable[[nn.Module], torch.optim.Optimizer]]:
    """(PySlowFast's SlowFast with `cfg`'s clip length, crop size, classes and dropout, an optimizer
    factory from their `construct_optimizer` with `cfg`'s SOLVER values). Their head pools adaptively
    (MULTIGRID.SHORT_CYCLE, its only effect on the model): their fixed kernel is wrong at 112 px."""
    with pyslowfast_imports(path):
        defaults = importlib.import_module("slowfast.config.defaults")
        builder = importlib.import_module("slowfast.models.video_model_builder")
        optimizer = importlib.import_module("slowfast.models.optimizer")
    theirs = defaults.get_cfg()
    theirs.merge_from_file(os.path.join(path, PYSLOWFAST_YAML))
    theirs.NUM_GPUS = 0
    theirs.DATA.NUM_FRAMES, theirs.DATA.TRAIN_CROP_SIZE = cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE
    theirs.MODEL.NUM_CLASSES, theirs.MODEL.DROPOUT_RATE = cfg.MODEL.NUM_CLASSES, cfg.MODEL.DROPOUT_RATE
    theirs.MULTIGRID.SHORT_CYCLE = True
    for key in ("BASE_LR", "MOMENTUM", "WEIGHT_DECAY", "NESTEROV", "DAMPENING"):
        theirs.SOLVER[key] = cfg.SOLVER[key]
    theirs.BN.WEIGHT_DECAY = cfg.BN.WEIGHT_DECAY
    return builder.SlowFast(theirs), lambda model: optimizer.construct_optimizer(model, theirs)


@torch.no_grad()
def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Random BatchNorm scales, shifts and statistics (PySlowFast zero-initialises final BNs, which
    would hide most of the network from an output comparison)."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for t, (low, high) in ((m.weight, (0.5, 1.5)), (m.bias, (-0.1, 0.1)), (m.running_mean, (-0.1, 0.1)),
                                   (m.running_var, (0.5, 1.5))):
                t.copy_(low + (high - low) * torch.rand(t.shape, generator=generator))


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Load `source`'s state dict (PySlowFast names) into `target` through the checkpoint interop;
    raises naming the keys that do not match (not the same network)."""
    target_state = target.state_dict()
    state = convert_state_dict(source.state_dict(), target_state)
    missing, unexpected = sorted(set(target_state) - set(state)), sorted(set(state) - set(target_state))
    if missing or unexpected:
        raise ValueError(f"the two SlowFast models differ: missing in the source {missing[:5]}, "
                         f"unknown to the target {unexpected[:5]} ({len(missing)} / {len(unexpected)} keys)")
    target.load_state_dict(state)


def _logits(output) -> torch.Tensor:
    return output["logits"] if isinstance(output, dict) else output


@torch.no_grad()
def assert_same_outputs(ours: nn.Module, theirs: nn.Module, inputs: Sequence[torch.Tensor],
                        ours_act: Callable[[torch.Tensor], torch.Tensor] = lambda x: x.softmax(-1)) -> float:
    """Eval-mode forward of both on `inputs`: ours (logits, through `ours_act`, the head activation
    PySlowFast applies at test time) must equal theirs, compared as logs (small probabilities count);
    returns the max abs difference of the logs."""
    modes = ours.training, theirs.training
    ours.eval(), theirs.eval()
    try:
        a = ours_act(_logits(ours(list(inputs)))).log()
        b = _logits(theirs(list(inputs))).reshape(len(inputs[0]), -1).log()
    finally:
        ours.train(modes[0]), theirs.train(modes[1])
    if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        diff = (a - b).abs().max().item() if a.shape == b.shape else float("nan")
        raise AssertionError(f"outputs differ (shapes {list(a.shape)} / {list(b.shape)}, max abs diff {diff:.3g}): "
                             f"the two models are not the same network")
    return (a - b).abs().max().item()


def interleaved_medians(variants: Dict[str, Step], repeats: int, warmup: int = 1) -> Dict[str, List[float]]:
    """Seconds of each variant's call over `repeats` rounds, one call of every variant per round (so a
    change in the machine's load hits all of them alike), after `warmup` untimed rounds."""
    for _ in range(warmup):
        for step in variants.values():
            step()
    times: Dict[str, List[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, step in variants.items():
            times[name].append(timed(step)[0])
    return times


def ratio_rows(times: Dict[Tuple[str, str, str], List[float]]) -> List[Dict[str, str]]:
    """Table rows from times keyed (layout, mode, "ours" | "reference"): medians and ours / reference."""
    rows = []
    for layout, mode in dict.fromkeys((k[0], k[1]) for k in times):
        ours, ref = times[(layout, mode, "ours")], times[(layout, mode, "reference")]
        median, ref_median = statistics.median(ours), statistics.median(ref)
        rows.append({"layout": layout, "mode": mode, "ours s": f"{median:.3f}", "reference s": f"{ref_median:.3f}",
                     "ours / reference": f"{median / ref_median:.3f}x",
                     "ours min / ref min": f"{min(ours) / min(ref):.3f}x"})
    return rows


def our_train_step(cfg: CfgNode, batch: Dict, source: Optional[nn.Module] = None) -> Tuple[nn.Module, Step]:
    """(model, step): ego_fsar's model as the trainer builds it (weights copied from `source` when
    given), and one `run_step` on `batch`."""
    seed_everything(cfg.RNG_SEED)
    model, optimizer, scaler, policy, device = build_train_model(cfg)
    if source is not None:
        copy_weights(source, model)
    protocol, criterion = get_protocol(cfg), build_loss(cfg)
    model.train()
    return model, lambda: run_step(model, batch, criterion, optimizer, scaler, policy, device, protocol, cfg)


def reference_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Dict,
                         channels_last: bool) -> Step:
    """PySlowFast's train_net step, fp32: inputs to the layout, forward, cross-entropy, NaN check on the
    loss, zero_grad, backward, optimizer step."""
    def step() -> None:
        inputs = inputs_to(batch["inputs"], torch.device("cpu"), channels_last)
        loss = F.cross_entropy(model(inputs), batch["label"])
        if torch.isnan(loss):
            raise RuntimeError("reference loss is NaN")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.train()
    return step


def inference_step(model: nn.Module, batch: Dict, channels_last: bool) -> Step:
    """Eval-mode forward without gradients (the model is put back in training mode after)."""
    @torch.no_grad()
    def step() -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        mode = model.training
        model.eval()
        try:
            return model(inputs_to(batch["inputs"], torch.device("cpu"), channels_last))
        finally:
            model.train(mode)
    return step


def compare_models(cfg: CfgNode, batch: Dict, reference: Callable[[], Tuple[nn.Module, Callable]],
                   repeats: int, warmup: int) -> Tuple[List[Dict[str, str]], float]:
    """(table rows, max output difference) of ours against `reference()` -> (model, optimizer factory):
    same weights, same `batch`, fp32, default and channels-last 3D layouts, train step and inference,
    interleaved."""
    variants: Dict[Tuple[str, str, str], Step] = {}
    max_diff = 0.0
    for channels_last in (False, True):
        layout = "channels-last 3d" if channels_last else "default"
        run_cfg = cfg.clone()
        run_cfg.TRAIN.CHANNELS_LAST, run_cfg.TRAIN.MIXED_PRECISION, run_cfg.LOG_MODEL_INFO = channels_last, False, False
        ref_model, make_optimizer = reference()
        randomize_norms(ref_model, cfg.RNG_SEED)
        if channels_last:
            ref_model = channels_last_3d(ref_model)
        ours, our_step = our_train_step(run_cfg, batch, ref_model)
        inputs = inputs_to(batch["inputs"], torch.device("cpu"), channels_last)
        max_diff = max(max_diff, assert_same_outputs(ours, ref_model, inputs))
        variants[(layout, "train step", "ours")] = our_step
        variants[(layout, "train step", "reference")] = reference_train_step(
            ref_model, make_optimizer(ref_model), batch, channels_last)
        variants[(layout, "inference", "ours")] = inference_step(ours, batch, channels_last)
        variants[(layout, "inference", "reference")] = inference_step(ref_model, batch, channels_last)
    times = interleaved_medians(variants, repeats, warmup)
    return ratio_rows(times), max_diff


def compare_line(cfg: CfgNode, options: argparse.Namespace, batch: Dict) -> str:
    """The `--compare-pyslowfast` report (or why it was skipped)."""
    path = options.compare_pyslowfast
    problem = check_checkout(path)
    if problem:
        return problem
    if cfg.MODEL.MODEL_NAME != "SlowFast":
        return f"--compare-pyslowfast: skipped, MODEL.MODEL_NAME is {cfg.MODEL.MODEL_NAME!r} (SlowFast needed)"
    rows, diff = compare_models(cfg, batch, lambda: build_pyslowfast(path, cfg), options.steps, options.warmup)
    title = (f"against PySlowFast ({path}, {PYSLOWFAST_YAML}), same weights and input, fp32, median of "
             f"{options.steps} interleaved repetitions after {options.warmup} warm-up (eval outputs equal, "
             f"max abs diff {diff:.1e})")
    columns = ("layout", "mode", "ours s", "reference s", "ours / reference", "ours min / ref min")
    return "\n".join([title, format_table(rows, columns)])
