"""Checkpoints in PySlowFast's format, written atomically, loaded from every container users bring.

A checkpoint is `{"epoch", "model_state", "optimizer_state", "scaler_state", "cfg", "rng_states"}` at
`OUTPUT_DIR/checkpoints/checkpoint_epoch_00005.pyth` (epoch numbers are 1-based in file names and
0-based inside, as in PySlowFast); `checkpoint_best.pyth` adds the metric that made it best.

- `rng_states[r]` is process r's python, numpy, torch (and, when NUM_GPUS > 0, CUDA) RNG state.
  Auto-resume restores each process's own; on a different number of processes, a process beyond
  the saved ones keeps its seeded RNG (RNG_SEED + rank), so the run continues but is not the one
  an uninterrupted run would have given. Checkpoints of ego_fsar 0.1 (one `rng_state`, rank 0's)
  restore it on rank 0 only.
- Saving refuses non-finite tensors; loading refuses non-finite weights.
- Fit: testing needs every model weight (TEST.CHECKPOINT_STRICT); initialising training from
  TRAIN.CHECKPOINT_FILE_PATH may differ in the model's head (`HEAD_KEY_PREFIXES`), which keeps its
  initialisation; resuming needs every weight (TRAIN.CHECKPOINT_STRICT). Unexpected checkpoint keys
  are only reported.
- Auto-resume skips unreadable (corrupt) checkpoints, newest first, with a warning; temporary files
  left by a killed save are removed by the next save or resume.
"""
import os
import pickle
import random
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode

from . import distributed as du
from .checkpoint_formats import convert_state_dict, position_grids
from .logging import get_logger

logger = get_logger(__name__)

_CONTAINER_KEYS = ("model_state", "model", "module", "state_dict", "state")
_CHECKPOINT_RE = re.compile(r"checkpoint_epoch_(\d+)\.pyth$")
_TEMP_RE = re.compile(r"\.pyth\.tmp\.(\d+)$")
BEST_CHECKPOINT = "checkpoint_best.pyth"
# Names shown in messages about long key lists.
_SHOWN = 5
_RELAX_HINT = ("set TEST.CHECKPOINT_STRICT False (testing) or TRAIN.CHECKPOINT_STRICT False (training) "
               "to load only what fits")


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


def _restore_rng(checkpoint: Dict[str, Any], path: str) -> None:
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


def _first(names: Sequence[str]) -> str:
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
                       _first(removed))
    return removed


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
                f"{len(part['nonfinite'])} tensors: {_first(part['nonfinite'])} (the training diverged: "
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
            logger.warning("%d %s keys in %s: %s", len(names), kind, path, _first(names))


def head_key_prefixes(model: torch.nn.Module) -> Tuple[str, ...]:
    """State-dict key prefixes of the model's task head, declared by its class (`HEAD_KEY_PREFIXES`)."""
    return tuple(getattr(du.unwrap(model), "HEAD_KEY_PREFIXES", ()))


def _describe_shapes(keys: Sequence[str], state: Dict[str, Any], model_state: Dict[str, torch.Tensor]) -> str:
    shown = [f"{k} {list(np.shape(state[k]))} vs model {list(model_state[k].shape)}" for k in keys[:_SHOWN]]
    return ", ".join(shown) + (", ..." if len(keys) > _SHOWN else "")


def _check_fit(path: str, report: Dict[str, list], state: Dict[str, Any], model_state: Dict[str, torch.Tensor],
               head: Tuple[str, ...], head_may_differ: bool) -> None:
    """Raise CheckpointError on missing or mis-shaped weights (BN's `num_batches_tracked` counters
    excepted; the head's when `head_may_differ`, which are then reported as re-initialised)."""
    missing = [k for k in report["missing"] if not k.endswith("num_batches_tracked")]
    misshaped = report["shape_mismatch"]
    if head and head_may_differ:
        in_head = [k for k in missing + misshaped if k.startswith(head)]
        if in_head:
            logger.warning("%s: the model's head differs from the checkpoint's (%d weights missing or mis-shaped: "
                           "%s): they keep their initialisation", path, len(in_head), _first(in_head))
        missing = [k for k in missing if not k.startswith(head)]
        misshaped = [k for k in misshaped if not k.startswith(head)]
    if not missing and not misshaped:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {len(model_state)} weights are missing from it "
                     f"({_first(missing)})")
    if misshaped:
        parts.append(f"{len(misshaped)} have another shape ({_describe_shapes(misshaped, state, model_state)})")
    if report["unexpected"]:
        parts.append(f"{len(report['unexpected'])} of its keys are not in the model ({_first(report['unexpected'])})")
    advice = f"To load it anyway, {_RELAX_HINT}"
    if head and all(k.startswith(head) for k in missing + misshaped):
        advice = (f"Only the model's head ({', '.join(p + '*' for p in head)}) differs: it would run with "
                  f"untrained weights. A few-shot head on a classifier's checkpoint must be meta-trained first "
                  f"(or set TEST.ALLOW_UNTRAINED_HEAD True to test it untrained); otherwise {_RELAX_HINT}")
    raise CheckpointError(f"checkpoint {path} does not fit the model: {'; '.join(parts)}. {advice}")


def _apply_checkpoint(
    checkpoint: Any,
    path: str,
    model: torch.nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler=None,
    checkpoint_type: str = "pytorch",
    inflate: bool = False,
    strict: bool = False,
    head_may_differ: bool = False,
    prefix_map: Sequence[Tuple[str, str]] = (),
    clear_name_patterns: Sequence[str] = (),
    epoch_reset: bool = False,
    restore_rng: bool = False,
) -> int:
    """`load_checkpoint` of an already read checkpoint."""
    state = extract_state_dict(checkpoint, path)
    for pattern in clear_name_patterns:
        state = {k.replace(pattern, ""): v for k, v in state.items()}
    target = du.unwrap(model)
    model_state = target.state_dict()
    state = convert_state_dict(state, model_state, checkpoint_type=checkpoint_type, inflate=inflate,
                               prefix_map=prefix_map, grids=position_grids(target))
    report = report_mismatch(model_state, state)
    if strict:
        _check_fit(path, report, state, model_state, head_key_prefixes(target), head_may_differ)
    usable = {k: v for k, v in state.items() if k in model_state and k not in report["shape_mismatch"]}
    bad = nonfinite_keys(usable)
    if bad:
        raise CheckpointError(f"refusing to load {path}: {len(bad)} weights hold non-finite values (NaN/inf): "
                              f"{_first(bad)} (saved from a diverged training?)")
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
        if restore_rng:
            _restore_rng(checkpoint, path)
    if epoch_reset or not isinstance(checkpoint, dict):
        return -1
    return int(checkpoint.get("epoch", -1))


def load_checkpoint(
    path: str,
    model: torch.nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler=None,
    checkpoint_type: str = "pytorch",
    inflate: bool = False,
    strict: bool = False,
    head_may_differ: bool = False,
    prefix_map: Sequence[Tuple[str, str]] = (),
    clear_name_patterns: Sequence[str] = (),
    epoch_reset: bool = False,
    restore_rng: bool = False,
) -> int:
    """Load weights (and optionally optimizer/scaler/this process's RNG state) into `model`.

    Returns the 0-based epoch stored in the checkpoint, or -1 when there is none (or epoch_reset).
    Missing, unexpected and mis-shaped keys are logged (counts and first names). `strict` raises
    CheckpointError on missing or mis-shaped weights, except the model's head's when
    `head_may_differ` (they keep their initialisation); unexpected keys never raise. Non-finite
    weights always raise.
    """
    return _apply_checkpoint(
        read_checkpoint(path, checkpoint_type), path, model, optimizer, scaler, checkpoint_type=checkpoint_type,
        inflate=inflate, strict=strict, head_may_differ=head_may_differ, prefix_map=prefix_map,
        clear_name_patterns=clear_name_patterns, epoch_reset=epoch_reset, restore_rng=restore_rng)


def _cfg_options(cfg: CfgNode, checkpoint_type: str) -> Dict[str, Any]:
    """`load_checkpoint` options for a user's checkpoint (conversions from the TRAIN group)."""
    return dict(
        checkpoint_type=checkpoint_type,
        inflate=cfg.TRAIN.CHECKPOINT_INFLATE,
        prefix_map=[tuple(p) for p in cfg.TRAIN.CHECKPOINT_PREFIX_MAP],
        clear_name_patterns=cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN,
    )


def load_from_cfg(cfg: CfgNode, path: str, model, optimizer=None, scaler=None) -> int:
    """Initialise training from a user's checkpoint: `load_checkpoint` in TRAIN.CHECKPOINT_TYPE with
    the TRAIN group's conversions and TRAIN.CHECKPOINT_STRICT (the model's head may differ)."""
    return load_checkpoint(
        path, model, optimizer, scaler, **_cfg_options(cfg, cfg.TRAIN.CHECKPOINT_TYPE),
        strict=cfg.TRAIN.CHECKPOINT_STRICT, head_may_differ=True, epoch_reset=cfg.TRAIN.CHECKPOINT_EPOCH_RESET,
    )


def _read_latest(path_to_job: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """(path, content) of the newest readable periodic checkpoint; unreadable newer ones are skipped
    with a warning and kept on disk. None when there is none; CheckpointError when none is readable."""
    paths = list_checkpoints(path_to_job)
    for path in reversed(paths):
        try:
            return path, read_checkpoint(path)
        except CheckpointError as err:
            logger.warning("Auto-resume skips %s, which cannot be read (the file is kept; the epoch is "
                           "trained again): %s", path, err)
    if paths:
        raise CheckpointError(f"auto-resume: none of the {len(paths)} checkpoints in "
                              f"{get_checkpoint_dir(path_to_job)} can be read (see the warnings above); move them "
                              f"away or set TRAIN.AUTO_RESUME False")
    return None


def load_train_checkpoint(cfg: CfgNode, model, optimizer, scaler=None) -> int:
    """PySlowFast precedence for training: auto-resume from the newest readable checkpoint in
    OUTPUT_DIR (model, optimizer, scaler, this process's RNG), else initialise from
    TRAIN.CHECKPOINT_FILE_PATH. Returns the 0-based epoch to start from."""
    if cfg.TRAIN.AUTO_RESUME:
        if du.is_master_proc():
            remove_stale_temp_files(get_checkpoint_dir(cfg.OUTPUT_DIR))
        latest = _read_latest(cfg.OUTPUT_DIR)
        if latest is not None:
            path, checkpoint = latest
            logger.info("Auto-resuming from %s", path)
            return _apply_checkpoint(checkpoint, path, model, optimizer, scaler, strict=cfg.TRAIN.CHECKPOINT_STRICT,
                                     restore_rng=True) + 1
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        logger.info("Initialising from %s", cfg.TRAIN.CHECKPOINT_FILE_PATH)
        return load_from_cfg(cfg, cfg.TRAIN.CHECKPOINT_FILE_PATH, model, optimizer, scaler) + 1
    return 0


def find_test_checkpoint(cfg: CfgNode) -> Tuple[Optional[str], str, Optional[str]]:
    """(path, where it came from, checkpoint type of a user's file or None for OUTPUT_DIR's own) by
    PySlowFast's precedence for testing: TEST.CHECKPOINT_FILE_PATH, else OUTPUT_DIR's best
    checkpoint (when TEST.USE_BEST_CHECKPOINT) or last one, else TRAIN.CHECKPOINT_FILE_PATH.
    The path is None when there is none."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return cfg.TEST.CHECKPOINT_FILE_PATH, "TEST.CHECKPOINT_FILE_PATH", cfg.TEST.CHECKPOINT_TYPE
    best = get_best_checkpoint_path(cfg.OUTPUT_DIR)
    if cfg.TEST.USE_BEST_CHECKPOINT and os.path.isfile(best):
        return best, "OUTPUT_DIR's best on validation, TEST.USE_BEST_CHECKPOINT", None
    last = get_last_checkpoint(cfg.OUTPUT_DIR)
    if last is not None:
        return last, "OUTPUT_DIR's last", None
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        return cfg.TRAIN.CHECKPOINT_FILE_PATH, "TRAIN.CHECKPOINT_FILE_PATH", cfg.TRAIN.CHECKPOINT_TYPE
    return None, "", None


def _describe_best(checkpoint: Any) -> str:
    best = stored_best_metric(checkpoint) if isinstance(checkpoint, dict) else None
    if best is None:
        return ""
    return f": best on validation with {best['name']} = {best['value']:.4f} at epoch {checkpoint.get('epoch', -1) + 1}"


def _untrained_head_allowed(cfg: CfgNode, model: torch.nn.Module) -> bool:
    """May testing leave the head's weights at their initialisation? With TEST.ALLOW_UNTRAINED_HEAD,
    or for a few-shot head whose class declares `PARAMETER_FREE` (predictions that do not depend on
    them, e.g. ProtoNet's cosine scale)."""
    head = getattr(du.unwrap(model), "fewshot_head", None)
    return cfg.TEST.ALLOW_UNTRAINED_HEAD or bool(getattr(head, "PARAMETER_FREE", False))


def load_test_checkpoint(cfg: CfgNode, model) -> Optional[str]:
    """Load the checkpoint `find_test_checkpoint` chooses (every model weight must fit unless
    TEST.CHECKPOINT_STRICT is False; the head's may be missing when `_untrained_head_allowed`) and
    log which file is tested, with the metric that made it best if stored. Returns the path used
    (None: random weights)."""
    path, source, user_type = find_test_checkpoint(cfg)
    if path is None:
        logger.warning("Testing with randomly initialised weights: no checkpoint given or found")
        return None
    options = _cfg_options(cfg, user_type) if user_type is not None else {}
    checkpoint = read_checkpoint(path, user_type or "pytorch")
    logger.info("Testing %s (%s)%s", path, source, _describe_best(checkpoint))
    _apply_checkpoint(checkpoint, path, model, **options, strict=cfg.TEST.CHECKPOINT_STRICT,
                      head_may_differ=_untrained_head_allowed(cfg, model))
    return path
