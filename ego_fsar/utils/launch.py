"""Start a job on one or several processes: single process, `mp.spawn` per node, or inside torchrun.

- `NUM_GPUS 0`: CPU. One process, or `NUM_CPU_PROCS` processes joined with gloo (so DDP runs on a
  CPU-only machine). Never calls CUDA.
- `NUM_GPUS N`: N processes per node (one per GPU) with NCCL; `NUM_SHARDS`/`SHARD_ID`/`INIT_METHOD`
  (`--init_method`) across nodes. Fails before starting anything when the node has fewer GPUs.
- Inside `torchrun` / `torch.distributed.launch` (RANK, LOCAL_RANK, WORLD_SIZE in the environment):
  this process joins that job through `env://` and runs `func` once.

Collectives wait at most `DIST.TIMEOUT_S`. A process whose `func` raises writes the error to
OUTPUT_DIR/stdout.log, leaves the process group without waiting for the others and exits non-zero;
the launcher (torchrun or `mp.spawn`) then ends the other processes. A spawned process ended by a signal
(`kill -9`, the out-of-memory killer, a crash), which cannot write its error, is named there by its
launcher (torchrun's agent names it in its own output). Spawned processes end when their launcher ends
(Linux), and their data-loader workers when they end.
"""
import atexit
import ctypes
import datetime
import multiprocessing.connection
import os
import signal
import socket
import sys
from typing import Callable, List

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fvcore.common.config import CfgNode

from .logging import LOG_FILE, log_fatal_error

_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
_PR_SET_PDEATHSIG = 1


def procs_per_node(cfg: CfgNode) -> int:
    return cfg.NUM_GPUS if cfg.NUM_GPUS > 0 else cfg.NUM_CPU_PROCS


def in_torchrun() -> bool:
    return all(v in os.environ for v in _TORCHRUN_VARS)


def check_gpus(cfg: CfgNode, needed: int) -> None:
    """Raise unless this node has `needed` CUDA devices (nothing to check, and no CUDA call, for NUM_GPUS 0)."""
    if cfg.NUM_GPUS == 0:
        return
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < needed:
        hint = " (CUDA is not available): set NUM_GPUS 0 to run on the CPU (NUM_CPU_PROCS N for N processes)"
        raise RuntimeError(f"NUM_GPUS {cfg.NUM_GPUS} needs {needed} CUDA device(s) on this node, found {found}"
                           + (hint if found == 0 else ""))


def free_port() -> int:
    """A TCP port of 127.0.0.1 that no process listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_init_method(cfg: CfgNode) -> str:
    """cfg.INIT_METHOD, with "auto" replaced by tcp://127.0.0.1:<a free port> (one node only)."""
    if cfg.INIT_METHOD != "auto":
        return cfg.INIT_METHOD
    if cfg.NUM_SHARDS > 1:
        raise ValueError(f"INIT_METHOD auto works on one node only; with NUM_SHARDS {cfg.NUM_SHARDS} pass "
                         "--init_method tcp://<host of shard 0>:<port> on every node")
    return f"tcp://127.0.0.1:{free_port()}"


def _leave_group() -> None:
    """Wait for every process, then leave the process group (at the end of a torchrun process whose
    jobs all succeeded: a failed job has left the group already)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _run_job(func: Callable, cfg: CfgNode) -> None:
    """Run `func(cfg=cfg)`; an error is written to OUTPUT_DIR/stdout.log (see log_fatal_error) and re-raised."""
    try:
        func(cfg=cfg)
    except BaseException:
        log_fatal_error(cfg.OUTPUT_DIR, getattr(func, "__name__", "job"))
        raise


def _run_in_group(func: Callable, cfg: CfgNode, local_rank: int, keep_group: bool = False, **group) -> None:
    """Join the process group (`group`: init_process_group arguments) unless already in it, pick the
    device, run `func(cfg=cfg)`. The group is left afterwards, or with `keep_group` when the process
    exits (so that several jobs of one process, e.g. run_net's training and testing, share it). On an
    error the group is left at once, without a barrier the other processes may never reach."""
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo" if cfg.NUM_GPUS == 0 else cfg.DIST_BACKEND,
                                timeout=datetime.timedelta(seconds=cfg.DIST.TIMEOUT_S), **group)
        if keep_group:
            atexit.register(_leave_group)
    try:
        if cfg.NUM_GPUS > 0:
            torch.cuda.set_device(local_rank)
        _run_job(func, cfg)
    except BaseException:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
    if not keep_group:
        dist.destroy_process_group()


def _end_with_launcher(launcher_pid: int) -> None:
    """Have the kernel kill this process when its launcher ends (Linux; elsewhere a no-op). SIGKILL, not
    the SIGINT of torch's spawn, which a process waiting in a collective acts on only when the wait ends."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != launcher_pid:  # the launcher ended before prctl
        os._exit(1)


def _run(local_rank: int, num_proc: int, func: Callable, init_method: str, shard_id: int,
         num_shards: int, cfg: CfgNode, launcher_pid: int) -> None:
    """Entry of one spawned process."""
    _end_with_launcher(launcher_pid)
    _run_in_group(func, cfg, local_rank, init_method=init_method, world_size=num_proc * num_shards,
                  rank=shard_id * num_proc + local_rank)


def _log_killed_ranks(processes: List, cfg: CfgNode, what: str) -> None:
    """Wait until one of this node's spawned `processes` (local rank order) fails or all have ended; then
    write `[rank R] <what> ended by signal S` to OUTPUT_DIR/stdout.log and stderr for each that a signal
    ended by then: it could not log an error itself, and the others may only report a lost connection."""
    running = [p for p in processes if p.exitcode is None]
    while running and not any(p.exitcode for p in processes):
        multiprocessing.connection.wait([p.sentinel for p in running])  # a process ended since is ready
        running = [p for p in running if p.exitcode is None]
    for local_rank, process in enumerate(processes):
        if process.exitcode is not None and process.exitcode < 0:
            line = (f"[rank {cfg.SHARD_ID * len(processes) + local_rank}] {what} ended by signal "
                    f"{signal.Signals(-process.exitcode).name} (pid {process.pid}): killed (out of memory, by a "
                    f"user or the scheduler) or crashed, without an error of its own")
            if cfg.OUTPUT_DIR:
                os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
                with open(os.path.join(cfg.OUTPUT_DIR, LOG_FILE), "a") as f:
                    f.write(line + "\n")
            print(line, file=sys.stderr, flush=True)


def launch_job(cfg: CfgNode, func: Callable, daemon: bool = False) -> None:
    """Run `func(cfg=cfg)` on every process of this job (see the module docstring)."""
    if in_torchrun():
        local_rank = int(os.environ["LOCAL_RANK"])
        check_gpus(cfg, local_rank + 1)
        _run_in_group(func, cfg, local_rank, keep_group=True, init_method="env://")
        return
    num_proc = procs_per_node(cfg)
    check_gpus(cfg, num_proc)
    if num_proc * cfg.NUM_SHARDS > 1:
        context = mp.spawn(_run, nprocs=num_proc, daemon=daemon, join=False, args=(
            num_proc, func, resolve_init_method(cfg), cfg.SHARD_ID, cfg.NUM_SHARDS, cfg, os.getpid()))
        _log_killed_ranks(context.processes, cfg, getattr(func, "__name__", "job"))
        while not context.join():
            pass
    else:
        _run_job(func, cfg)
