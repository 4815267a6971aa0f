"""Pieces shared by the training and testing loops."""
import sys
from typing import Any, Dict, Iterable, List

import torch
from tqdm import tqdm

from ego_fsar.utils import distributed as du


def inputs_to(inputs: List[torch.Tensor], device: torch.device, channels_last: bool = False) -> List[torch.Tensor]:
    """Move pathway tensors [B,C,T,H,W] to `device` (a new list; the caller's list is untouched)."""
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    return [x.to(device, non_blocking=True).contiguous(memory_format=fmt) for x in inputs]


def channels_last_3d(model: torch.nn.Module) -> torch.nn.Module:
    """Convert the 5-D weights (3D convolutions) of `model` to the channels-last 3D layout, in place.

    `Module.to(memory_format=torch.channels_last_3d)` also touches 4-D weights, which that layout
    cannot hold (e.g. a head's 2D convolutions), so only modules with 5-D parameters are converted.
    """
    for module in model.modules():
        if any(p.dim() == 5 for p in module.parameters(recurse=False)):
            module.to(memory_format=torch.channels_last_3d)
    return model


def to_device(obj: Any, device: torch.device) -> Any:
    """`obj` with every tensor in it (nested lists, tuples and dicts) moved to `device`; other
    values (strings, numbers) as they are."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def model_batch_entries(model: torch.nn.Module, batch: Dict, device: torch.device) -> Dict[str, Any]:
    """The batch entries besides `inputs` that the model declares in `BATCH_INPUTS` (e.g. a method's
    text embeddings or second view), moved to `device`, as keyword arguments of its forward."""
    names = getattr(du.unwrap(model), "BATCH_INPUTS", ())
    missing = [name for name in names if name not in batch]
    if missing:
        raise KeyError(f"{type(du.unwrap(model)).__name__} reads batch entries {missing} (BATCH_INPUTS) that the "
                       f"dataset does not give (it gives {sorted(batch)})")
    return {name: to_device(batch[name], device) for name in names}


def progress(iterable: Iterable, desc: str, total: int = None) -> Iterable:
    """A progress bar on the master process (stderr), the bare iterable elsewhere."""
    if not du.is_master_proc():
        return iterable
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True,
                mininterval=2.0, leave=False)
