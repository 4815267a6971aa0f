"""Loading checkpoints into a model, from every container users bring, with PySlowFast's precedence.

The files themselves (paths, atomic writes, RNG states, reading) are `checkpoint_io`'s; its public
names are available here too (`cu.save_checkpoint`, `cu.get_path_to_checkpoint`, ...).

- Loading refuses non-finite weights.
- Fit: testing needs every model weight (TEST.CHECKPOINT_STRICT); initialising training from
  TRAIN.CHECKPOINT_FILE_PATH may differ in the model's head (`HEAD_KEY_PREFIXES`), which keeps its
  initialisation; resuming needs every weight (TRAIN.CHECKPOINT_STRICT). Unexpected checkpoint keys
  are only reported.
- Auto-resume skips unreadable (corrupt) checkpoints, newest first, with a warning.
"""
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.config import CfgNode

from . import distributed as du
from .checkpoint_formats import convert_state_dict
from .checkpoint_io import (  # noqa: F401 (re-exported: the checkpoint API users call as `cu.<name>`)
    BEST_CHECKPOINT,
    CheckpointError,
    atomic_torch_save,
    atomic_write,
    first_names,
    get_best_checkpoint_path,
    get_checkpoint_dir,
    get_last_checkpoint,
    get_path_to_checkpoint,
    has_checkpoint,
    is_checkpoint_epoch,
    list_checkpoints,
    nonfinite_keys,
    read_best_metric,
    read_checkpoint,
    remove_stale_temp_files,
    restore_rng_state,
    rng_state_for_rank,
    save_checkpoint,
    stored_best_metric,
)
from .logging import get_logger
from .position_tables import position_grids

logger = get_logger(__name__)

_CONTAINER_KEYS = ("model_state", "model", "module", "state_dict", "state")
_RELAX_HINT = ("set TEST.CHECKPOINT_STRICT False (testing) or TRAIN.CHECKPOINT_STRICT False (training) "
               "to load only what fits")


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
            logger.warning("%d %s keys in %s: %s", len(names), kind, path, first_names(names))


def head_key_prefixes(model: torch.nn.Module) -> Tuple[str, ...]:
    """State-dict key prefixes of the model's task head, declared by its class (`HEAD_KEY_PREFIXES`)."""
    return tuple(getattr(du.unwrap(model), "HEAD_KEY_PREFIXES", ()))


def _describe_shapes(keys: Sequence[str], state: Dict[str, Any], model_state: Dict[str, torch.Tensor]) -> str:
    return first_names([f"{k} {list(np.shape(state[k]))} vs model {list(model_state[k].shape)}" for k in keys])


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
                           "%s): they keep their initialisation", path, len(in_head), first_names(in_head))
        missing = [k for k in missing if not k.startswith(head)]
        misshaped = [k for k in misshaped if not k.startswith(head)]
    if not missing and not misshaped:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {len(model_state)} weights are missing from it "
                     f"({first_names(missing)})")
    if misshaped:
        parts.append(f"{len(misshaped)} have another shape ({_describe_shapes(misshaped, state, model_state)})")
    if report["unexpected"]:
        parts.append(f"{len(report['unexpected'])} of its keys are not in the model ({first_names(report['unexpected'])})")
    advice = f"To load it anyway, {_RELAX_HINT}"
    if head and all(k.startswith(head) for k in missing + misshaped):
        advice = (f"Only the model's head ({', '.join(p + '*' for p in head)}) differs: it would run with "
                  f"untrained weights. A few-shot head on a classifier's checkpoint must be meta-trained first "
                  f"(or set TEST.ALLOW_UNTRAINED_HEAD True to test it untrained); otherwise {_RELAX_HINT}")
    raise CheckpointError(f"checkpoint {path} does not fit the model: {'; '.join(parts)}. {advice}")


def load_checkpoint(
    path: str,
    model: torch.nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    checkpoint_type: str = "pytorch",
    inflate: bool = False,
    strict: bool = False,
    head_may_differ: bool = False,
    prefix_map: Sequence[Tuple[str, str]] = (),
    clear_name_patterns: Sequence[str] = (),
    epoch_reset: bool = False,
    restore_rng: bool = False,
    checkpoint: Any = None,
) -> int:
    """Load weights (and optionally optimizer/scaler/this process's RNG state) into `model` from the
    file `path` (or from `checkpoint`, its content when already read).

    Returns the 0-based epoch stored in the checkpoint, or -1 when there is none (or epoch_reset).
    Missing, unexpected and mis-shaped keys are logged (counts and first names). `strict` raises
    CheckpointError on missing or mis-shaped weights, except the model's head's when
    `head_may_differ` (they keep their initialisation); unexpected keys never raise. Non-finite
    weights always raise.
    """
    if checkpoint is None:
        checkpoint = read_checkpoint(path, checkpoint_type)
    state = extract_state_dict(checkpoint, path)
    for pattern in clear_name_patterns:
        state = {k.replace(pattern, ""): v for k, v in state.items()}
    target = du.unwrap(model)
    model_state = target.state_dict()
    state = convert_state_dict(state, model_state, checkpoint_type=checkpoint_type, inflate=inflate,
                               prefix_map=prefix_map, grids=position_grids(target))
    complete = getattr(target, "complete_checkpoint", None)
    if complete is not None:  # a model may fill a part the checkpoint lacks (SUML: exo branch from ego)
        state = complete(state)
    report = report_mismatch(model_state, state)
    if strict:
        _check_fit(path, report, state, model_state, head_key_prefixes(target), head_may_differ)
    usable = {k: v for k, v in state.items() if k in model_state and k not in report["shape_mismatch"]}
    bad = nonfinite_keys(usable)
    if bad:
        raise CheckpointError(f"refusing to load {path}: {len(bad)} weights hold non-finite values (NaN/inf): "
                              f"{first_names(bad)} (saved from a diverged training?)")
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
            restore_rng_state(checkpoint, path)
    if epoch_reset or not isinstance(checkpoint, dict):
        return -1
    return int(checkpoint.get("epoch", -1))


def _cfg_options(cfg: CfgNode, checkpoint_type: str) -> Dict[str, Any]:
    """`load_checkpoint` options for a user's checkpoint (conversions from the TRAIN group)."""
    return dict(
        checkpoint_type=checkpoint_type,
        inflate=cfg.TRAIN.CHECKPOINT_INFLATE,
        prefix_map=[tuple(p) for p in cfg.TRAIN.CHECKPOINT_PREFIX_MAP],
        clear_name_patterns=cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN,
    )


def load_from_cfg(cfg: CfgNode, path: str, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                  scaler: Optional[torch.amp.GradScaler] = None) -> int:
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


def load_train_checkpoint(cfg: CfgNode, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer],
                          scaler: Optional[torch.amp.GradScaler] = None) -> int:
    """PySlowFast precedence for training: auto-resume from the newest readable checkpoint in
    OUTPUT_DIR (model, optimizer, scaler, this process's RNG), else initialise the parts of a model
    that start from files its config names (its `load_pretrained()`, if it has one, e.g.
    MultimodalDistill's teachers), then from TRAIN.CHECKPOINT_FILE_PATH. Returns the 0-based epoch to
    start from."""
    if cfg.TRAIN.AUTO_RESUME:
        if du.is_master_proc():
            remove_stale_temp_files(get_checkpoint_dir(cfg.OUTPUT_DIR))
        latest = _read_latest(cfg.OUTPUT_DIR)
        if latest is not None:
            path, checkpoint = latest
            logger.info("Auto-resuming from %s", path)
            return load_checkpoint(path, model, optimizer, scaler, strict=cfg.TRAIN.CHECKPOINT_STRICT,
                                   restore_rng=True, checkpoint=checkpoint) + 1
    load_pretrained = getattr(du.unwrap(model), "load_pretrained", None)
    if load_pretrained is not None:
        load_pretrained()
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


def load_test_checkpoint(cfg: CfgNode, model: torch.nn.Module) -> Optional[str]:
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
    load_checkpoint(path, model, **options, strict=cfg.TEST.CHECKPOINT_STRICT,
                    head_may_differ=_untrained_head_allowed(cfg, model), checkpoint=checkpoint)
    return path
