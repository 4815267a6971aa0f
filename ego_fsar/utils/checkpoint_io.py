"""Checkpoint files in PySlowFast's format: where they live, writing them atomically, reading them.

A checkpoint is `{"epoch", "model_state", "optimizer_state", "scaler_state", "cfg", "rng_states"}` at
`OUTPUT_DIR/checkpoints/checkpoint_epoch_00005.pyth` (epoch numbers are 1-based in file names and
0-based inside, as in PySlowFast); `checkpoint_best.pyth` adds the metric that made it best.

- `rng_states[r]` is process r's python, numpy, torch (and, when NUM_GPUS > 0, CUDA) RNG state.
  Auto-resume restores each process's own; on a different number of processes, a process beyond
  the saved ones keeps its seeded RNG (RNG_SEED + rank), so the run continues but is not the one
  an uninterrupted run would have given. Checkpoints of ego_fsar 0.1 (one `rng_state`, rank 0's)
  restore it on rank 0 only.
- Saving refuses non-finite tensors. Temporary files left by a killed save are removed by the next
  save or resume.
"""
import os
import pickle
import random
import re
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode

from . import distributed as du
from .atomic_file import atomic_write
from .logging import get_logger

logger = get_logger(__name__)

_CHECKPOINT_RE = re.compile(r"checkpoint_epoch_(\d+)\.pyth$")
_TEMP_RE = re.compile(r"\.pyth\.tmp\.(\d+)$")
BEST_CHECKPOINT = "checkpoint_best.pyth"
# Names shown in messages about long key lists.
_SHOWN = 5


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, holds non-finite values, or does not fit the model."""


def get_checkpoint_dir(path_to_job: str) -> str:
    return os.path.join(path_to_job, "checkpoints")


def get_path_to_checkpoint(path_to_job: str, epoch: int) -> str:
    """Path of the checkpoint written after (1-based) `epoch`."""
    return os.path.join(get_checkpoint_dir(path_to_job), f"checkpoint_epoch_{epoch:05d}.pyth")


def get_best_checkpoint_path(path_to_job: str) -> str:
    """Path of the job's best-on-validation checkpoint (which may not exist)."""
    return os.path.join(get_checkpoint_dir(path_to_job), BEST_CHECKPOINT)


def list_checkpoints(path_to_job: str) -> List[str]:
    """The job's periodic checkpoints, oldest (lowest epoch) first."""
    folder = get_checkpoint_dir(path_to_job)
    if not os.path.isdir(folder):
        return []
    found = sorted((int(m.group(1)), f) for f in os.listdir(folder) if (m := _CHECKPOINT_RE.search(f)))
    return [os.path.join(folder, name) for _, name in found]


def get_last_checkpoint(path_to_job: str) -> Optional[str]:
    """The periodic checkpoint with the highest epoch in the job's folder, or None."""
    found = list_checkpoints(path_to_job)
    return found[-1] if found else None


def has_checkpoint(path_to_job: str) -> bool:
    return get_last_checkpoint(path_to_job) is not None


def is_checkpoint_epoch(cfg: CfgNode, cur_epoch: int) -> bool:
    """Save after 0-based `cur_epoch`? (every CHECKPOINT_PERIOD epochs and after the last one)."""
    return (cur_epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0 or cur_epoch + 1 == cfg.SOLVER.MAX_EPOCH


def _rng_state(cuda: bool) -> Dict[str, Any]:
    """This process's RNG states (CUDA's current device only when `cuda`)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    """Restore `_rng_state`'s output; a CUDA state is applied lazily (never initialises CUDA)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def rng_state_for_rank(checkpoint: Dict[str, Any], rank: int) -> Optional[Dict[str, Any]]:
    """Process `rank`'s saved RNG state: `rng_states[rank]`, or an old checkpoint's single
    `rng_state` for rank 0; None when the checkpoint holds none for that rank."""
    states = checkpoint.get("rng_states")
    if states is None:
        states = [checkpoint["rng_state"]] if checkpoint.get("rng_state") else []
    return states[rank] if rank < len(states) else None


def restore_rng_state(checkpoint: Dict[str, Any], path: str) -> None:
    """Set this process's RNGs to its state in `checkpoint` (else keep them, with a warning)."""
    rank = du.get_rank()
    state = rng_state_for_rank(checkpoint, rank)
    if state is None:
        logger.warning("%s holds no RNG state for process %d: it keeps its seeded RNG (the run continues "
                       "but differs from an uninterrupted one)", path, rank)
        return
    _set_rng_state(state)


def stored_best_metric(checkpoint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """`{"name", "value"}` of the metric that made `checkpoint` the best one (None if not a best
    checkpoint); ego_fsar 0.1's `val_top1_err` reads as `top1_err`."""
    if "best_metric" in checkpoint:
        return checkpoint["best_metric"]
    if "val_top1_err" in checkpoint:
        return {"name": "top1_err", "value": float(checkpoint["val_top1_err"])}
    return None


def read_best_metric(path: str) -> Optional[Dict[str, Any]]:
    """`stored_best_metric` of the best checkpoint file `path`; None when there is none or when it
    cannot be read (with a warning naming the file)."""
    if not os.path.isfile(path):
        return None
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as err:
        logger.warning("Ignoring the unreadable best checkpoint (%s): the next better validation epoch "
                       "replaces it", err)
        return None
    return stored_best_metric(checkpoint) if isinstance(checkpoint, dict) else None


def nonfinite_keys(tensors: Dict[str, Any], prefix: str = "") -> List[str]:
    """Names (with `prefix`) of the floating tensors in a (nested) dict that hold a NaN or inf."""
    bad = []
    for key, value in tensors.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            bad += nonfinite_keys(value, f"{name}.")
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            bad.append(name)
    return bad


def first_names(names: Sequence[str]) -> str:
    """`a, b, c` (at most _SHOWN names, then `, ...`)."""
    return ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")


def _pid_alive(pid: int) -> bool:
    """Is process `pid` alive on this machine (signal 0 only checks)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def remove_stale_temp_files(folder: str) -> List[str]:
    """Delete `*.pyth.tmp.<pid>` files in `folder` that a killed save left: those whose process is
    not alive on this machine (a live one may still be writing). Returns the paths removed."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        match = _TEMP_RE.search(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    if removed:
        logger.warning("Removed %d temporary files of interrupted checkpoint saves: %s", len(removed),
                       first_names(removed))
    return removed


def atomic_torch_save(obj: Any, path: str) -> None:
    """`torch.save` to a temporary file in the same folder, then rename over `path`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path_to_job: str, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer],
                    epoch: int, cfg: CfgNode, scaler: Optional[torch.amp.GradScaler] = None,
                    path: Optional[str] = None, extra: Optional[Dict] = None) -> Optional[str]:
    """Write the state after 0-based `epoch`, with every process's RNG state; returns the path on the
    master process (None elsewhere).

    Collective: every process must call it (the RNG states are gathered). Raises CheckpointError on
    every process, writing nothing, when any process's model or optimizer state holds a NaN or inf.
    """
    path = path or get_path_to_checkpoint(path_to_job, epoch + 1)
    model_state = du.unwrap(model).state_dict()
    optimizer_state = optimizer.state_dict() if optimizer is not None else None
    bad = nonfinite_keys(model_state, "model_state.") + nonfinite_keys(
        (optimizer_state or {}).get("state", {}), "optimizer_state.state.")
    gathered = du.all_gather_object({"rng": _rng_state(cfg.NUM_GPUS > 0), "nonfinite": bad})
    for rank, part in enumerate(gathered):
        if part["nonfinite"]:
            raise CheckpointError(
                f"not writing {path}: process {rank} holds non-finite values (NaN/inf) in "
                f"{len(part['nonfinite'])} tensors: {first_names(part['nonfinite'])} (the training diverged: "
                f"lower SOLVER.BASE_LR or set SOLVER.CLIP_GRAD_L2NORM)")
    if not du.is_master_proc():
        return None
    checkpoint = {
        "epoch": epoch,
        "model_state": model_state,
        "optimizer_state": optimizer_state,
        "scaler_state": scaler.state_dict() if scaler is not None else None,
        "cfg": cfg.dump(),
        "rng_states": [part["rng"] for part in gathered],
    }
    checkpoint.update(extra or {})
    remove_stale_temp_files(os.path.dirname(path))
    atomic_torch_save(checkpoint, path)
    return path


def read_checkpoint(path: str, checkpoint_type: str = "pytorch") -> Dict[str, Any]:
    """Load a checkpoint file into a dict; caffe2 `.pkl` files are read with pickle. Any failure to
    read it (a truncated or corrupt file) raises CheckpointError naming the file."""
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
    except Exception as err:  # noqa: BLE001 - whatever the unpickler raises, the file is unreadable
        raise CheckpointError(f"cannot read checkpoint {path} (corrupt or truncated?): "
                              f"{type(err).__name__}: {err}") from err
