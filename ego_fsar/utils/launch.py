"""Start a job on one or several processes: single process, `mp.spawn` per node, or inside torchrun.

- `NUM_GPUS 0`: CPU. One process, or `NUM_CPU_PROCS` processes joined with gloo (so DDP runs on a
  CPU-only machine). Never calls CUDA.
- `NUM_GPUS N`: N processes per node (one per GPU) with NCCL; `NUM_SHARDS`/`SHARD_ID`/`--init_method`
  across nodes.
- Inside `torchrun` / `torch.distributed.launch` (RANK, LOCAL_RANK, WORLD_SIZE in the environment):
  this process joins that job through `env://` and runs `func` once.
"""
import atexit
import os
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fvcore.common.config import CfgNode

_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


def procs_per_node(cfg: CfgNode) -> int:
    return cfg.NUM_GPUS if cfg.NUM_GPUS > 0 else cfg.NUM_CPU_PROCS


def in_torchrun() -> bool:
    return all(v in os.environ for v in _TORCHRUN_VARS)


def _backend(cfg: CfgNode) -> str:
    return "gloo" if cfg.NUM_GPUS == 0 else cfg.DIST_BACKEND


def _leave_group() -> None:
    """Wait for every process, then leave the process group (at the end of a torchrun process)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _run_in_group(func: Callable, cfg: CfgNode, local_rank: int, keep_group: bool = False, **group) -> None:
    """Join the process group (`group`: init_process_group arguments) unless already in it, pick the
    device, run `func(cfg=cfg)`. The group is left afterwards, or with `keep_group` when the process
    exits (so that several jobs of one process, e.g. run_net's training and testing, share it)."""
    if not dist.is_initialized():
        dist.init_process_group(backend=_backend(cfg), **group)
        if keep_group:
            atexit.register(_leave_group)
    try:
        if cfg.NUM_GPUS > 0:
            torch.cuda.set_device(local_rank)
        func(cfg=cfg)
    finally:
        if not keep_group:
            dist.destroy_process_group()


def _run(local_rank: int, num_proc: int, func: Callable, init_method: str, shard_id: int,
         num_shards: int, cfg: CfgNode) -> None:
    """Entry of one spawned process."""
    _run_in_group(func, cfg, local_rank, init_method=init_method, world_size=num_proc * num_shards,
                  rank=shard_id * num_proc + local_rank)


def launch_job(cfg: CfgNode, init_method: str, func: Callable, daemon: bool = False) -> None:
    """Run `func(cfg=cfg)` on every process of this job (see the module docstring)."""
    if in_torchrun():
        _run_in_group(func, cfg, int(os.environ["LOCAL_RANK"]), keep_group=True, init_method="env://")
        return
    num_proc = procs_per_node(cfg)
    if num_proc * cfg.NUM_SHARDS > 1:
        mp.spawn(_run, nprocs=num_proc, daemon=daemon,
                 args=(num_proc, func, init_method, cfg.SHARD_ID, cfg.NUM_SHARDS, cfg))
    else:
        func(cfg=cfg)
