"""Process-group helpers. Everything works without an initialised process group (one process)."""
from typing import Any, List

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def is_master_proc() -> bool:
    """True on global rank 0 (the process that logs, writes checkpoints and stats)."""
    return get_rank() == 0


def synchronize() -> None:
    if is_dist() and get_world_size() > 1:
        dist.barrier()


def all_reduce(tensors: List[torch.Tensor], average: bool = True) -> List[torch.Tensor]:
    """Sum (or average) each tensor over all processes, in place; returns the list."""
    if get_world_size() == 1:
        return tensors
    for t in tensors:
        dist.all_reduce(t)
        if average:
            t.div_(get_world_size())
    return tensors


def all_gather_object(obj: Any) -> list:
    """Gather a picklable object from every process, in rank order."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (same shape on every rank) from all processes along dim 0."""
    if get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(
        model, torch.nn.parallel.DistributedDataParallel) else model


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over processes and keeps this rank's rows."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rows = slice(get_rank() * tensor.shape[0], (get_rank() + 1) * tensor.shape[0])
        parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """[W*B, ...] concatenation of `tensor` [B, ...] (same shape on every rank) from all processes in rank
    order, differentiable: the gradient of this rank's rows is summed over processes. When every process
    computes the same loss on the gathered batch, DDP's gradient average then equals the gradient of
    that loss in one process holding the whole batch."""
    if get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)
