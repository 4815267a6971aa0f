"""Mixed precision: the one place that decides autocast dtype and loss scaling.

Decision (`amp_policy`), from TRAIN.MIXED_PRECISION and MIXED_PRECISION.DTYPE:

    device  DTYPE  autocast                               GradScaler
    any     -      off unless TRAIN.MIXED_PRECISION        no
    cuda    auto   bf16 if the GPU supports it, else fp16  with fp16
    cuda    fp16   fp16                                   yes
    cuda    bf16   bf16 (error if unsupported)             no
    cpu     auto   bf16                                   no
    cpu     bf16   bf16                                   no
    cpu     fp16   error                                  -

The CPU path never calls a CUDA API. The loops use `autocast(policy)` around the forward pass and
loss, and `make_grad_scaler(policy)` (a disabled scaler is a pass-through whose state is `{}`).
"""
import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import torch
from fvcore.common.config import CfgNode

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class AmpPolicy:
    """enabled: autocast on; device_type: "cuda" or "cpu"; dtype: autocast dtype (None when off);
    use_scaler: scale the loss with a GradScaler (fp16 on CUDA)."""

    enabled: bool
    device_type: str
    dtype: Optional[torch.dtype]
    use_scaler: bool


def _cuda_dtype(requested: str, bf16_supported: Callable[[], bool]) -> torch.dtype:
    if requested == "fp16":
        return torch.float16
    if bf16_supported():
        return torch.bfloat16
    if requested == "bf16":
        raise ValueError("MIXED_PRECISION.DTYPE is 'bf16' but this GPU does not support bfloat16; use 'fp16' or 'auto'")
    return torch.float16


def _cpu_dtype(requested: str) -> torch.dtype:
    if requested == "fp16":
        raise ValueError("MIXED_PRECISION.DTYPE 'fp16' is not supported on CPU; use 'bf16' or 'auto'")
    return torch.bfloat16


def amp_policy(
    cfg: CfgNode, device: torch.device, bf16_supported: Optional[Callable[[], bool]] = None
) -> AmpPolicy:
    """The mixed-precision policy of this process (see the module docstring's table).

    bf16_supported: the CUDA bf16 capability check, `torch.cuda.is_bf16_supported` by default;
    called only for a CUDA device.
    """
    device = torch.device(device)
    requested = cfg.MIXED_PRECISION.DTYPE
    if requested not in ("auto", *_DTYPES):
        raise ValueError(f"MIXED_PRECISION.DTYPE must be 'auto', 'fp16' or 'bf16', got {requested!r}")
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"mixed precision supports cuda and cpu devices, got {device}")
    if not cfg.TRAIN.MIXED_PRECISION:
        return AmpPolicy(enabled=False, device_type=device.type, dtype=None, use_scaler=False)
    if device.type == "cuda":
        dtype = _cuda_dtype(requested, bf16_supported or torch.cuda.is_bf16_supported)
    else:
        dtype = _cpu_dtype(requested)
    return AmpPolicy(enabled=True, device_type=device.type, dtype=dtype, use_scaler=dtype == torch.float16)


def autocast(policy: AmpPolicy) -> ContextManager:
    """`torch.autocast` for the policy's device and dtype, or a no-op context when disabled."""
    if not policy.enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=policy.device_type, dtype=policy.dtype)


def make_grad_scaler(policy: AmpPolicy) -> torch.amp.GradScaler:
    """A GradScaler, enabled only when the policy scales the loss; its `state_dict()` is checkpointable."""
    return torch.amp.GradScaler(policy.device_type, enabled=policy.use_scaler)
