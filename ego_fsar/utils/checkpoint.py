"""Checkpoints in PySlowFast's format, written atomically, loaded from every container users bring.

A checkpoint is `{"epoch", "model_state", "optimizer_state", "scaler_state", "cfg", "rng_state"}` at
`OUTPUT_DIR/checkpoints/checkpoint_epoch_00005.pyth` (epoch numbers are 1-based in file names and
0-based inside, as in PySlowFast).
"""
import os
import pickle
import random
import re
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode

from . import distributed as du
from .checkpoint_formats import convert_state_dict, position_grids
from .logging import get_logger

logger = get_logger(__name__)

_CONTAINER_KEYS = ("model_state", "model", "module", "state_dict", "state")
_CHECKPOINT_RE = re.compile(r"checkpoint_epoch_(\d+)\.pyth$")
BEST_CHECKPOINT = "checkpoint_best.pyth"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model (in strict mode)."""


def get_checkpoint_dir(path_to_job: str) -> str:
    return os.path.join(path_to_job, "checkpoints")


def get_path_to_checkpoint(path_to_job: str, epoch: int) -> str:
    """Path of the checkpoint written after (1-based) `epoch`."""
    return os.path.join(get_checkpoint_dir(path_to_job), f"checkpoint_epoch_{epoch:05d}.pyth")


def get_last_checkpoint(path_to_job: str) -> Optional[str]:
    """The periodic checkpoint with the highest epoch in the job's folder, or None."""
    folder = get_checkpoint_dir(path_to_job)
    if not os.path.isdir(folder):
        return None
    found = [(int(m.group(1)), f) for f in os.listdir(folder) if (m := _CHECKPOINT_RE.search(f))]
    return os.path.join(folder, max(found)[1]) if found else None


def has_checkpoint(path_to_job: str) -> bool:
    return get_last_checkpoint(path_to_job) is not None


def is_checkpoint_epoch(cfg: CfgNode, cur_epoch: int) -> bool:
    """Save after 0-based `cur_epoch`? (every CHECKPOINT_PERIOD epochs and after the last one)."""
    return (cur_epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or cur_epoch + 1 == cfg.SOLVER.MAX_EPOCH


def _rng_state() -> Dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def best_val_error(path_to_job: str) -> float:
    """Validation top-1 error stored in the job's best checkpoint (inf when there is none)."""
    path = os.path.join(get_checkpoint_dir(path_to_job), BEST_CHECKPOINT)
    if not os.path.isfile(path):
        return float("inf")
    return float(torch.load(path, map_location="cpu", weights_only=False).get("val_top1_err", float("inf")))


def atomic_torch_save(obj: Any, path: str) -> None:
    """`torch.save` to a temporary file in the same folder, then rename over `path`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path_to_job: str, model: torch.nn.Module, optimizer, epoch: int, cfg: CfgNode,
                    scaler=None, path: Optional[str] = None, extra: Optional[Dict] = None) -> Optional[str]:
    """Write the state after 0-based `epoch` (master process only); returns the path."""
    if not du.is_master_proc():
        return None
    path = path or get_path_to_checkpoint(path_to_job, epoch + 1)
    checkpoint = {
        "epoch": epoch,
        "model_state": du.unwrap(model).state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "scaler_state": scaler.state_dict() if scaler is not None else None,
        "cfg": cfg.dump(),
        "rng_state": _rng_state(),
    }
    checkpoint.update(extra or {})
    atomic_torch_save(checkpoint, path)
    return path


def read_checkpoint(path: str, checkpoint_type: str = "pytorch") -> Dict[str, Any]:
    """Load a checkpoint file into a dict; caffe2 `.pkl` files are read with pickle."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if checkpoint_type == "caffe2":
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except RuntimeError as err:
            if "TorchScript" not in str(err) and "jit" not in str(err):
                raise
            return torch.jit.load(path, map_location="cpu")
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err


def extract_state_dict(checkpoint: Dict[str, Any], path: str = "") -> Dict[str, Any]:
    """The parameter dict inside a container (`model_state`, `model`, `module`, `state_dict`, `state`
    (TAMT), caffe2 `blobs`, a TorchScript module (OpenAI CLIP `.pt`), or a raw state dict), with
    DataParallel's `module.` prefix removed."""
    state = checkpoint.state_dict() if isinstance(checkpoint, torch.nn.Module) else checkpoint
    for key in _CONTAINER_KEYS + ("blobs",):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: no state dict found (looked for {', '.join(_CONTAINER_KEYS)} or raw)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def report_mismatch(model_state: Dict[str, torch.Tensor], loaded: Dict[str, Any]) -> Dict[str, list]:
    """Names missing from `loaded`, unexpected in it, and present with a different shape."""
    missing = sorted(k for k in model_state if k not in loaded)
    unexpected = sorted(k for k in loaded if k not in model_state)
    shape_mismatch = sorted(
        k for k in loaded if k in model_state and tuple(np.shape(loaded[k])) != tuple(model_state[k].shape)
    )
    return {"missing": missing, "unexpected": unexpected, "shape_mismatch": shape_mismatch}


def _log_report(path: str, report: Dict[str, list], loaded: int) -> None:
    logger.info(
        "Loaded %s: %d loaded, %d missing, %d unexpected, %d shape-mismatched",
        path, loaded, len(report["missing"]), len(report["unexpected"]), len(report["shape_mismatch"]),
    )
    for kind, names in report.items():
        if names:
            logger.warning("%s keys in %s: %s", kind, path, ", ".join(names))


def load_checkpoint(
    path: str,
    model: torch.nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler=None,
    checkpoint_type: str = "pytorch",
    inflate: bool = False,
    strict: bool = False,
    prefix_map: Sequence[Tuple[str, str]] = (),
    clear_name_patterns: Sequence[str] = (),
    epoch_reset: bool = False,
    restore_rng: bool = False,
) -> int:
    """Load weights (and optionally optimizer/scaler/RNG state) into `model`.

    Returns the 0-based epoch stored in the checkpoint, or -1 when there is none (or epoch_reset).
    Missing, unexpected and mis-shaped keys are logged by name; `strict` raises on any of them.
    """
    checkpoint = read_checkpoint(path, checkpoint_type)
    state = extract_state_dict(checkpoint, path)
    for pattern in clear_name_patterns:
        state = {k.replace(pattern, ""): v for k, v in state.items()}
    target = du.unwrap(model)
    model_state = target.state_dict()
    state = convert_state_dict(state, model_state, checkpoint_type=checkpoint_type, inflate=inflate,
                               prefix_map=prefix_map, grids=position_grids(target))
    report = report_mismatch(model_state, state)
    if strict and any(report.values()):
        raise CheckpointError(f"{path} does not match the model: " + "; ".join(
            f"{kind}: {', '.join(names)}" for kind, names in report.items() if names))
    usable = {k: v for k, v in state.items() if k in model_state and k not in report["shape_mismatch"]}
    target.load_state_dict(usable, strict=False)
    _log_report(path, report, len(usable))
    full_match = not any(report.values())
    if isinstance(checkpoint, dict) and not epoch_reset:
        if optimizer is not None and checkpoint.get("optimizer_state"):
            if full_match:
                optimizer.load_state_dict(checkpoint["optimizer_state"])
            else:
                logger.warning("Not restoring the optimizer from %s: the model keys differ", path)
        if scaler is not None and checkpoint.get("scaler_state"):
            scaler.load_state_dict(checkpoint["scaler_state"])
        if restore_rng and checkpoint.get("rng_state"):
            _set_rng_state(checkpoint["rng_state"])
    if epoch_reset or not isinstance(checkpoint, dict):
        return -1
    return int(checkpoint.get("epoch", -1))


def load_from_cfg(cfg: CfgNode, path: str, model, optimizer=None, scaler=None, test: bool = False,
                  restore_rng: bool = False) -> int:
    """`load_checkpoint` with the TRAIN (or TEST) checkpoint options of `cfg`."""
    group = cfg.TEST if test else cfg.TRAIN
    return load_checkpoint(
        path, model, optimizer, scaler,
        checkpoint_type=group.CHECKPOINT_TYPE,
        inflate=cfg.TRAIN.CHECKPOINT_INFLATE,
        strict=cfg.TRAIN.CHECKPOINT_STRICT,
        prefix_map=[tuple(p) for p in cfg.TRAIN.CHECKPOINT_PREFIX_MAP],
        clear_name_patterns=cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN,
        epoch_reset=cfg.TRAIN.CHECKPOINT_EPOCH_RESET and not test,
        restore_rng=restore_rng,
    )


def load_train_checkpoint(cfg: CfgNode, model, optimizer, scaler=None) -> int:
    """PySlowFast precedence for training: auto-resume from OUTPUT_DIR, else TRAIN.CHECKPOINT_FILE_PATH.

    Returns the 0-based epoch to start from.
    """
    last = get_last_checkpoint(cfg.OUTPUT_DIR) if cfg.TRAIN.AUTO_RESUME else None
    if last is not None:
        logger.info("Auto-resuming from %s", last)
        return load_checkpoint(last, model, optimizer, scaler, restore_rng=True) + 1
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        logger.info("Initialising from %s", cfg.TRAIN.CHECKPOINT_FILE_PATH)
        return load_from_cfg(cfg, cfg.TRAIN.CHECKPOINT_FILE_PATH, model, optimizer, scaler) + 1
    return 0


def load_test_checkpoint(cfg: CfgNode, model) -> Optional[str]:
    """PySlowFast precedence for testing: TEST.CHECKPOINT_FILE_PATH, else the last checkpoint in
    OUTPUT_DIR, else TRAIN.CHECKPOINT_FILE_PATH. Returns the path used (None: random weights)."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        load_from_cfg(cfg, cfg.TEST.CHECKPOINT_FILE_PATH, model, test=True)
        return cfg.TEST.CHECKPOINT_FILE_PATH
    last = get_last_checkpoint(cfg.OUTPUT_DIR)
    if last is not None:
        load_checkpoint(last, model)
        return last
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        load_from_cfg(cfg, cfg.TRAIN.CHECKPOINT_FILE_PATH, model)
        return cfg.TRAIN.CHECKPOINT_FILE_PATH
    logger.warning("Testing with randomly initialised weights: no checkpoint given or found")
    return None
