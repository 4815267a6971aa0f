"""One training step (forward under autocast, loss, non-finite checks, scaled backward, optimizer step):
the step `train_epoch` runs on every batch and `ego_fsar.benchmark.train` times."""
from typing import Dict, List, NamedTuple

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ego_fsar.models import optimizer as optim
from ego_fsar.models.losses import Criterion, is_finite_loss
from ego_fsar.utils.amp import AmpPolicy, autocast

from .protocols import TrainProtocol


class StepResult(NamedTuple):
    """What a step computed: the model's outputs, the labels, the batch size, the loss (a scalar
    tensor) and its named parts."""
    outputs: Dict[str, torch.Tensor]
    labels: object
    batch_size: int
    loss: torch.Tensor
    parts: Dict[str, float]


def _all_finite(tensors: List[torch.Tensor]) -> bool:
    """Whether every element of `tensors` is finite. Fast path: a sum is finite only if every element is
    (NaN and inf propagate), so a finite float32 sum of the sums settles it; a non-finite one (or a sum
    that overflowed) is settled by the max-abs norm, which cannot overflow (6x slower on a SlowFast R50's
    weights here)."""
    if not tensors or torch.isfinite(torch.stack([t.sum(dtype=torch.float32) for t in tensors]).sum()):
        return True
    return bool(torch.isfinite(nn.utils.get_total_norm(tensors, norm_type=float("inf"))))


def _check_finite(tensors: List[torch.Tensor], what: str, cur_epoch: int, cur_iter: int) -> None:
    """Raise FloatingPointError (naming epoch and iteration) if any of `tensors` holds a NaN or inf."""
    if not _all_finite(tensors):
        raise FloatingPointError(
            f"non-finite {what} at epoch {cur_epoch + 1}, iteration {cur_iter + 1}: stopping before a "
            f"checkpoint is written (lower SOLVER.BASE_LR or set SOLVER.CLIP_GRAD_L2NORM)")


def _check_weights(params: List[torch.Tensor], check_grads: bool, cur_epoch: int, cur_iter: int) -> None:
    """After the optimizer step: raise if a weight is non-finite, naming the gradients when `check_grads`
    and one of them is non-finite. One pass over the weights per step: any optimizer's update of a NaN
    or inf gradient is NaN or inf, so the gradients are only read to name the cause."""
    if not _all_finite(params):
        if check_grads:
            _check_finite([p.grad for p in params if p.grad is not None], "gradients", cur_epoch, cur_iter)
        _check_finite(params, "weights", cur_epoch, cur_iter)


def run_step(model: nn.Module, batch: Dict, criterion: Criterion, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, policy: AmpPolicy, device: torch.device,
             protocol: TrainProtocol, cfg: CfgNode, *,
             accum: int = 1, update: bool = True, cur_epoch: int = 0, cur_iter: int = 0) -> StepResult:
    """Forward `batch` through `protocol` under `policy`'s autocast, compute the loss, and backpropagate
    it divided by `accum` (gradient accumulation). With `update`, finish the optimisation step: unscale,
    clip (SOLVER.CLIP_GRAD_*), step, check the weights (and, when they are not finite, whether the
    gradients were, unless the scaler skips non-finite steps itself), update the scaler and clear the
    gradients.

    Raises FloatingPointError naming `cur_epoch` and `cur_iter` at a non-finite loss, gradient or weight."""
    with autocast(policy):
        outputs, labels, batch_size = protocol.forward(model, batch, device, cfg)
        loss, parts = criterion(outputs, labels)
    if not is_finite_loss(loss):
        raise FloatingPointError(f"loss is {loss.item()} at epoch {cur_epoch + 1}, iteration {cur_iter + 1}: stopping")
    scaler.scale(loss / accum).backward()
    if update:
        params = [p for p in model.parameters() if p.requires_grad]
        scaler.unscale_(optimizer)
        check_grads = not scaler.is_enabled()
        if check_grads and cfg.SOLVER.CLIP_GRAD_VAL is not None:  # clamping turns an inf gradient finite
            _check_finite([p.grad for p in params if p.grad is not None], "gradients", cur_epoch, cur_iter)
        optim.clip_gradients(params, cfg)
        scaler.step(optimizer)
        _check_weights(params, check_grads, cur_epoch, cur_iter)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    return StepResult(outputs, labels, batch_size, loss, parts)
