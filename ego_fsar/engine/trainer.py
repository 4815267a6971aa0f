"""Training (PySlowFast's train_net) for every protocol (supervised batches or episodes): epochs,
periodic validation with a best-on-val checkpoint, periodic checkpoints, auto-resume, mixed
precision, gradient accumulation and clipping."""
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from fvcore.common.config import CfgNode
from fvcore.nn.precise_bn import get_bn_modules, update_bn_stats
from torch.utils.data import DataLoader

from ego_fsar.datasets import loader
from ego_fsar.models import build_model
from ego_fsar.models import optimizer as optim
from ego_fsar.models.backbones.norm_helper import convert_sync_batchnorm
from ego_fsar.models.freeze import apply_freeze, freeze_norm_statistics
from ego_fsar.models.losses import Criterion, build_loss
from ego_fsar.models.lr_policy import get_lr_at_epoch
from ego_fsar.models.stats import log_model_info
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils import metrics
from ego_fsar.utils.amp import AmpPolicy, amp_policy, make_grad_scaler
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.logging import get_logger, log_json_stats, setup_logging
from ego_fsar.utils.meters import TrainMeter, ValMeter
from ego_fsar.utils.tensorboard import TensorboardWriter

from .best_checkpoint import BestCheckpoint
from .common import channels_last_3d, progress
from .episodic_validation import EpisodicValidation
from .protocols import TrainProtocol, get_protocol
from .step import run_step

logger = get_logger(__name__)

# Model outputs named `count_<name>` are summed over each training epoch (steps and processes) into
# the train_epoch record's `<name>`.
COUNT_PREFIX = "count_"


def _iters(data_loader, cfg: CfgNode) -> int:
    n = len(data_loader)
    return min(n, cfg.TRAIN.MAX_ITERS_PER_EPOCH) if cfg.TRAIN.MAX_ITERS_PER_EPOCH > 0 else n


def _error_stats(outputs: Dict[str, torch.Tensor], labels, cfg: CfgNode) -> Dict[str, float]:
    """Top-1/top-5 errors (%) averaged over processes: `top1_err`, `top5_err` for single-label
    outputs, `verb_top1_err`, ..., `action_top1_err` for dict labels (EPIC); none for multi-label
    or unlabelled batches (labels None)."""
    if cfg.DATA.MULTI_LABEL or labels is None:
        return {}
    stats = metrics.task_topk_errors(outputs, labels, (1, 5))
    values = du.all_reduce([v.detach().float().cpu() for v in stats.values()])
    return {k: v.item() for k, v in zip(stats, values)}


def _update(meter, stats: Dict[str, float], *args) -> None:
    """Pass top1/top5 errors positionally and every other statistic as extra_stats."""
    stats = dict(stats)
    meter.update_stats(stats.pop("top1_err", None), stats.pop("top5_err", None), *args, extra_stats=stats)


def _add_counts(counts: Dict[str, float], outputs) -> None:
    """Add a step's `count_<name>` model outputs (e.g. EgoExo's clips without a teacher entry) to this
    process's epoch sums `counts` {name: sum}."""
    if not isinstance(outputs, Mapping):
        return
    for key, value in outputs.items():
        if key.startswith(COUNT_PREFIX):
            name = key[len(COUNT_PREFIX):]
            counts[name] = counts.get(name, 0.0) + float(value)


def _epoch_counts(counts: Dict[str, float], cur_epoch: int) -> Dict[str, int]:
    """The epoch's `counts` summed over processes (for the train_epoch record); each above 0 is
    logged as a warning."""
    names = sorted(counts)
    totals = du.all_reduce([torch.tensor(counts[n], dtype=torch.float64) for n in names], average=False)
    totals = {name: int(total.item()) for name, total in zip(names, totals)}
    for name, total in totals.items():
        if total > 0:
            logger.warning("Epoch %d: %s = %d (the model's count_%s, summed over the epoch and all processes)",
                           cur_epoch + 1, name, total, name)
    return totals


def train_epoch(data_loader: DataLoader, model: nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, criterion: Criterion, meter: TrainMeter, cur_epoch: int,
                cfg: CfgNode, policy: AmpPolicy, writer: TensorboardWriter, device: torch.device,
                protocol: TrainProtocol) -> Dict:
    """One epoch of training. Raises FloatingPointError (naming epoch and iteration) at the first
    non-finite loss, gradient (unless a GradScaler skips such steps) or weight."""
    model.train()
    freeze_norm_statistics(model)
    data_size = _iters(data_loader, cfg)
    accum = protocol.accum_steps(cfg)
    optimizer.zero_grad(set_to_none=True)
    skipped = 0
    counts: Dict[str, float] = {}
    meter.iter_tic()
    for cur_iter, batch in enumerate(progress(data_loader, f"epoch {cur_epoch + 1}", data_size)):
        if cur_iter >= data_size:
            break
        lr = get_lr_at_epoch(cfg, cur_epoch + cur_iter / data_size)
        optim.set_lr(optimizer, lr)
        meter.data_toc()
        skipped += protocol.skipped(batch)
        update = (cur_iter + 1) % accum == 0 or cur_iter + 1 == data_size
        outputs, labels, batch_size, loss, parts = run_step(
            model, batch, criterion, optimizer, scaler, policy, device, protocol, cfg,
            accum=accum, update=update, cur_epoch=cur_epoch, cur_iter=cur_iter)
        _add_counts(counts, outputs)
        loss_value, *part_values = du.all_reduce([loss.detach().float().cpu()] +
                                                 [torch.tensor(float(v)) for v in parts.values()])
        loss_value, parts = loss_value.item(), {k: v.item() for k, v in zip(parts, part_values)}
        mb_size = batch_size * du.get_world_size()
        meter.iter_toc()
        _update(meter, {**_error_stats(outputs, labels, cfg), **parts}, loss_value, lr, mb_size)
        meter.log_iter_stats(cur_epoch, cur_iter)
        step = cur_epoch * data_size + cur_iter
        writer.add_scalars({"Train/loss": loss_value, "Train/lr": lr, **{f"Train/{k}": v for k, v in parts.items()}},
                           step)
        meter.iter_tic()
    stats = meter.log_epoch_stats(cur_epoch, _epoch_counts(counts, cur_epoch))
    meter.reset()
    _report_skipped(skipped, cur_epoch, cfg.DATA.TRAIN_SPLIT, "replaced")
    return stats


def _report_skipped(skipped: int, cur_epoch: int, split: str, action: str) -> int:
    """Log how many unreadable samples were `action` ("replaced", "left out") this epoch, summed
    over processes; returns that total."""
    (total,) = du.all_reduce([torch.tensor(float(skipped))], average=False)
    total = int(total.item())
    if total > 0:
        logger.warning("Epoch %d: %d unreadable %s samples were %s (see the warnings above for their paths)",
                       cur_epoch + 1, total, split, action)
        log_json_stats({"_type": "data_skipped", "epoch": cur_epoch + 1, "split": split, "skipped": total})
    return total


def _val_part(model, batch: Dict, device: torch.device, cfg: CfgNode, protocol) -> Dict:
    """This process's share of a validation batch: its size `n`, and either its per-task top-1/top-5
    errors (%) or, with DATA.MULTI_LABEL, its sigmoid scores and multi-hot labels (CPU)."""
    if protocol.is_empty(batch):
        return {"n": 0}
    outputs, labels, n = protocol.forward(model, batch, device, cfg)
    if cfg.DATA.MULTI_LABEL:
        return {"n": n, "scores": torch.sigmoid(outputs["logits"].float()).cpu(), "labels": labels.float().cpu()}
    if labels is None:
        raise ValueError(f"validation on {cfg.DATA.VAL_SPLIT!r} needs labelled clips; set TRAIN.EVAL_PERIOD 0 to "
                         f"train without validation")
    errors = metrics.task_topk_errors(outputs, labels, (1, 5))
    return {"n": n, "errors": {k: v.item() for k, v in errors.items()}}


@torch.no_grad()
def eval_epoch(data_loader: DataLoader, model: nn.Module, meter: ValMeter, cur_epoch: int, cfg: CfgNode,
               device: torch.device, protocol: TrainProtocol) -> Dict:
    """Top-1/top-5 error on the validation split (single view per clip, or val episodes), or mAP
    with DATA.MULTI_LABEL. Each batch's shares are gathered from every process (they may differ in
    size: unreadable clips are left out and counted) and weighted by their sizes."""
    model.eval()
    skipped = 0
    meter.iter_tic()
    for cur_iter, batch in enumerate(progress(data_loader, f"val {cur_epoch + 1}")):
        meter.data_toc()
        skipped += protocol.skipped(batch)
        parts = [p for p in du.all_gather_object(_val_part(model, batch, device, cfg, protocol)) if p["n"]]
        meter.iter_toc()
        if parts:
            total = sum(p["n"] for p in parts)
            if cfg.DATA.MULTI_LABEL:
                meter.update_predictions(torch.cat([p["scores"] for p in parts]), torch.cat([p["labels"] for p in parts]))
            errors = {k: sum(p["errors"][k] * p["n"] for p in parts) / total for k in parts[0].get("errors", {})}
            _update(meter, errors, total)
        meter.log_iter_stats(cur_epoch, cur_iter)
        meter.iter_tic()
    skipped = _report_skipped(skipped, cur_epoch, cfg.DATA.VAL_SPLIT, "left out")
    if meter.num_samples == 0:
        raise RuntimeError(f"no sample of the validation split {cfg.DATA.VAL_SPLIT!r} could be read "
                           f"(epoch {cur_epoch + 1}); see the warnings above for the paths")
    stats = meter.log_epoch_stats(cur_epoch, skipped)
    meter.reset()
    return stats


def _precise_bn(data_loader, model, cfg: CfgNode, device: torch.device, protocol) -> None:
    """Recompute BN population statistics on training batches (BN.USE_PRECISE_STATS)."""
    if not get_bn_modules(model):
        return
    batches = (protocol.bn_inputs(batch, device, cfg) for batch in data_loader)
    update_bn_stats(model, batches, min(cfg.BN.NUM_BATCHES_PRECISE, len(data_loader)))


def build_validation(cfg: CfgNode, device: torch.device, protocol: TrainProtocol
                     ) -> Optional[Callable[[nn.Module, int], Dict]]:
    """`validate(model, cur_epoch) -> val stats`, or None with TRAIN.EVAL_PERIOD 0: the training
    protocol's `eval_epoch` on DATA.VAL_SPLIT, or with TRAIN.VAL_PROTOCOL "episodic" the few-shot test's
    episodes (`EpisodicValidation`, e.g. for a model trained on unlabelled clips)."""
    if cfg.TRAIN.EVAL_PERIOD <= 0:
        return None
    if cfg.TRAIN.VAL_PROTOCOL == "episodic":
        return EpisodicValidation(cfg)
    if cfg.TRAIN.VAL_PROTOCOL:
        raise ValueError(f"TRAIN.VAL_PROTOCOL must be '' (TRAIN.PROTOCOL's validation) or 'episodic', got "
                         f"{cfg.TRAIN.VAL_PROTOCOL!r}")
    val_loader = protocol.loader(cfg, cfg.DATA.VAL_SPLIT)
    meter = ValMeter(len(val_loader), cfg)
    return lambda model, cur_epoch: eval_epoch(val_loader, model, meter, cur_epoch, cfg, device, protocol)


def wrap_ddp(model: nn.Module, cfg: CfgNode, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """`model` in DistributedDataParallel over the current process group; gradients are all-reduced in
    fp16 (torch's compression hook) with MODEL.FP16_ALLREDUCE. DDP looks for parameters without a
    gradient only in a model that declares it has some (`FIND_UNUSED_PARAMETERS`, see
    models/methods/base.py); in any other model an unused trainable parameter stops training with DDP's
    error at the next step."""
    ids = [device.index] if device.type == "cuda" else None
    model = nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids and ids[0],
                                                find_unused_parameters=getattr(model, "FIND_UNUSED_PARAMETERS", False))
    if cfg.MODEL.FP16_ALLREDUCE:
        model.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
    return model


def build_train_model(cfg: CfgNode
                      ) -> Tuple[nn.Module, torch.optim.Optimizer, torch.amp.GradScaler, AmpPolicy, torch.device]:
    """Model (frozen parts applied, moved, BatchNorm made SyncBatchNorm with BN.NORM_TYPE sync_batchnorm
    on GPUs, DDP-wrapped when distributed), optimizer, scaler, policy."""
    model = build_model(cfg)
    apply_freeze(model, cfg)
    model = convert_sync_batchnorm(model, cfg)
    device = device_for(cfg)
    if cfg.TRAIN.CHANNELS_LAST:
        model = channels_last_3d(model)
    if cfg.LOG_MODEL_INFO and du.is_master_proc():
        log_model_info(model, cfg)
    if cfg.MODEL.COMPILE:
        model.compile()
    optimizer = optim.construct_optimizer(model, cfg)
    policy = amp_policy(cfg, device)
    scaler = make_grad_scaler(policy)
    if du.get_world_size() > 1:
        model = wrap_ddp(model, cfg, device)
    return model, optimizer, scaler, policy, device


def warn_if_data_bound(stats: Dict, cfg: CfgNode) -> bool:
    """Warn (on the master) when an epoch's mean data time `dt_data` exceeds a fifth of its network step
    time `dt_net` (the loader starves the model); returns whether it did."""
    if stats["dt_data"] <= stats["dt_net"] / 5:
        return False
    if du.is_master_proc():
        logger.warning("Data loading takes %.3f s per iteration against %.3f s for the training step (more than "
                       "a fifth): raise DATA_LOADER.NUM_WORKERS (now %s) or DATA_LOADER.PREFETCH_FACTOR, or set "
                       "DATA_LOADER.PERSISTENT_WORKERS", stats["dt_data"], stats["dt_net"], cfg.DATA_LOADER.NUM_WORKERS)
    return True


def train(cfg: CfgNode) -> torch.nn.Module:
    """Train `MODEL.MODEL_NAME` on `TRAIN.DATASET` as configured (run by launch_job on every process);
    returns this process's trained model (unwrapped from DDP)."""
    seed_everything(cfg.RNG_SEED + du.get_rank())
    setup_logging(cfg.OUTPUT_DIR)
    logger.info("Training with config:\n%s", cfg.dump())
    model, optimizer, scaler, policy, device = build_train_model(cfg)
    start_epoch = cu.load_train_checkpoint(cfg, model, optimizer, scaler)
    protocol = get_protocol(cfg)
    train_loader = protocol.loader(cfg, cfg.DATA.TRAIN_SPLIT)
    validate = build_validation(cfg, device, protocol)
    criterion = build_loss(cfg)
    train_meter = TrainMeter(_iters(train_loader, cfg), cfg)
    writer = TensorboardWriter(cfg)
    logger.info("Start epoch: %d", start_epoch + 1)
    if start_epoch >= cfg.SOLVER.MAX_EPOCH:
        logger.warning("Nothing to train: the checkpoint ends at epoch %d >= SOLVER.MAX_EPOCH %d (set "
                       "TRAIN.CHECKPOINT_EPOCH_RESET True to fine-tune from it)", start_epoch, cfg.SOLVER.MAX_EPOCH)
    best = BestCheckpoint(cfg) if validate is not None else None
    data_bound = False
    for cur_epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
        loader.shuffle_dataset(train_loader, cur_epoch)
        stats = train_epoch(train_loader, model, optimizer, scaler, criterion, train_meter, cur_epoch,
                            cfg, policy, writer, device, protocol)
        data_bound = data_bound or warn_if_data_bound(stats, cfg)
        writer.add_scalars({f"Train/epoch_{k}": v for k, v in stats.items()}, cur_epoch)
        if cfg.BN.USE_PRECISE_STATS:
            _precise_bn(train_loader, model, cfg, device, protocol)
        if validate is not None and ((cur_epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0
                                     or cur_epoch + 1 == cfg.SOLVER.MAX_EPOCH):
            val_stats = validate(model, cur_epoch)
            writer.add_scalars({f"Val/{k}": v for k, v in val_stats.items()}, cur_epoch)
            best.step(val_stats, model, optimizer, cur_epoch, scaler)
        if cu.is_checkpoint_epoch(cfg, cur_epoch):  # after validation: a resumed run continues from here
            cu.save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, cur_epoch, cfg, scaler)
    writer.close()
    du.synchronize()
    return du.unwrap(model)


__all__ = ["train", "train_epoch", "eval_epoch", "build_validation", "build_train_model", "wrap_ddp"]
