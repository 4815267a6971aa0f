"""launch_job: single process, 2-process CPU spawn (gloo), joining a torchrun job, INIT_METHOD, and a
job with an error on one rank (every process ends, the error reaches stdout.log)."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from ego_fsar.config import get_cfg
from ego_fsar.utils import distributed as du
from ego_fsar.utils.launch import free_port, in_torchrun, launch_job, resolve_init_method
from tests.paths import REPO_ROOT

_ENTRY = os.path.join(REPO_ROOT, "tests", "utils", "launch_entry.py")
_MISSING = "frame_0000000007.jpg that only rank 1 reads"
# A failure condition, not a measured time: a job that hangs is stopped here.
_TIMEOUT_S = 90


def record_world(cfg):
    """Write rank, world size and the all-reduced sum of ranks to OUTPUT_DIR/rank<r>.json."""
    total = torch.tensor([float(du.get_rank())])
    du.all_reduce([total], average=False)
    with open(os.path.join(cfg.OUTPUT_DIR, f"rank{du.get_rank()}.json"), "w") as f:
        json.dump({"rank": du.get_rank(), "world": du.get_world_size(), "sum": total.item(),
                   "backend": dist.get_backend() if du.is_dist() else None}, f)


def fail_on_rank1(cfg):
    """Rank 1 raises; rank 0 waits for it in a collective (as validation does in all_gather_object)."""
    if du.get_rank() == 1:
        raise FileNotFoundError(_MISSING)
    du.all_gather_object(du.get_rank())


class _Endless(Dataset):
    def __len__(self):
        return 10**6

    def __getitem__(self, index):
        time.sleep(0.01)
        return torch.zeros(2)


def _start_workers(cfg):
    """An iterator of a loader with 2 workers; this process's and the workers' (pid, start time) are
    written to OUTPUT_DIR/pids<rank>.json once they run."""
    batches = iter(DataLoader(_Endless(), batch_size=2, num_workers=2))
    next(batches)
    me = psutil.Process()
    pids = [(p.pid, p.create_time()) for p in [me] + me.children(recursive=True)]
    path = os.path.join(cfg.OUTPUT_DIR, f"pids{du.get_rank()}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(pids, f)
    os.replace(path + ".tmp", path)
    return batches


def workers_then_fail_on_rank1(cfg):
    """Every rank starts data-loader workers; then rank 1 raises while rank 0 waits in a collective."""
    _start_workers(cfg)
    fail_on_rank1(cfg)


def wait_for_each_other(cfg):
    """Each rank waits for a message that the other never sends (until DIST.TIMEOUT_S)."""
    dist.recv(torch.zeros(1), src=1 - du.get_rank())


def workers_then_wait(cfg):
    """Every rank starts data-loader workers, then waits in torch.distributed (not in python code)."""
    _start_workers(cfg)
    wait_for_each_other(cfg)


def _cfg(tmp_path, procs):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.NUM_CPU_PROCS = procs
    cfg.OUTPUT_DIR = str(tmp_path)
    return cfg


def _read(tmp_path):
    return sorted((json.load(open(tmp_path / f)) for f in os.listdir(tmp_path) if f.startswith("rank")),
                  key=lambda r: r["rank"])


def _clear_torchrun_env(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _entry(tmp_path, func, procs=1, torchrun=False, opts=()):
    """The command running `func` of this module through launch_entry.py (`opts`: KEY VALUE overrides)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port())] if torchrun else [sys.executable]
    return launcher + [_ENTRY, str(tmp_path), func, str(procs), *opts]


def _env():
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(var, None)
    return env


def _job_pids(tmp_path, ranks=2):
    """(pid, start time) of every rank and its data-loader workers, as they recorded them."""
    return [tuple(p) for r in range(ranks) for p in json.load(open(tmp_path / f"pids{r}.json"))]


def _survivors(pids):
    """The processes of `pids` still running after a grace period for data-loader workers, which
    notice that their parent is gone within seconds."""
    deadline = time.monotonic() + 60
    while True:
        alive = []
        for pid, created in pids:
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def test_single_process_no_process_group(tmp_path, monkeypatch):
    _clear_torchrun_env(monkeypatch)
    launch_job(_cfg(tmp_path, 1), record_world)
    assert _read(tmp_path) == [{"rank": 0, "world": 1, "sum": 0.0, "backend": None}]


def test_two_process_cpu_spawn_uses_gloo(tmp_path, monkeypatch):
    _clear_torchrun_env(monkeypatch)
    assert not in_torchrun()
    launch_job(_cfg(tmp_path, 2), record_world)  # INIT_METHOD auto: a free port
    records = _read(tmp_path)
    assert [r["rank"] for r in records] == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 1.0 and r["backend"] == "gloo" for r in records)


def test_torchrun_join(tmp_path):
    subprocess.run(_entry(tmp_path, "record_world", torchrun=True), check=True, env=_env(), cwd=REPO_ROOT,
                   timeout=120)
    records = _read(tmp_path)
    assert [r["rank"] for r in records] == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 1.0 and r["backend"] == "gloo" for r in records)


def test_init_method_comes_from_config(tmp_path):
    cfg = _cfg(tmp_path, 2)
    cfg.INIT_METHOD = "tcp://10.0.0.1:1234"
    assert resolve_init_method(cfg) == "tcp://10.0.0.1:1234"
    cfg.INIT_METHOD = "auto"
    host, port = resolve_init_method(cfg).rsplit(":", 1)
    assert host == "tcp://127.0.0.1" and int(port) > 0
    cfg.NUM_SHARDS = 2
    with pytest.raises(ValueError, match="--init_method tcp://"):
        resolve_init_method(cfg)


@pytest.mark.parametrize("num_gpus", [1, 2])
def test_gpus_without_cuda_fail_before_starting(tmp_path, monkeypatch, num_gpus):
    _clear_torchrun_env(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = _cfg(tmp_path, 1)
    cfg.NUM_GPUS = num_gpus
    with pytest.raises(RuntimeError, match=f"NUM_GPUS {num_gpus} .*found 0.*set NUM_GPUS 0"):
        launch_job(cfg, record_world)
    assert _read(tmp_path) == []


def test_torchrun_error_on_one_rank_ends_the_job(tmp_path):
    """Rank 1 raises while rank 0 waits in a collective: the job ends (non-zero) instead of waiting
    for the process-group timeout, and stdout.log names rank 1 and its error after the traceback."""
    done = subprocess.run(_entry(tmp_path, "fail_on_rank1", torchrun=True), env=_env(), cwd=REPO_ROOT,
                          timeout=_TIMEOUT_S, capture_output=True, text=True)
    assert done.returncode != 0
    log = (tmp_path / "stdout.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert f"[rank 1] fail_on_rank1 failed: FileNotFoundError: {_MISSING}\n" in log


def test_spawn_error_on_one_rank_ends_every_process(tmp_path):
    """NUM_CPU_PROCS 2 with data-loader workers: rank 1 raises, rank 0 waits in a collective; the job
    ends non-zero and no rank or worker outlives it."""
    done = subprocess.run(_entry(tmp_path, "workers_then_fail_on_rank1", procs=2), env=_env(), cwd=REPO_ROOT,
                          timeout=_TIMEOUT_S, capture_output=True, text=True)
    assert done.returncode != 0
    assert f"[rank 1] workers_then_fail_on_rank1 failed: FileNotFoundError: {_MISSING}" in done.stderr
    assert _survivors(_job_pids(tmp_path)) == []


def test_dist_timeout_from_config(tmp_path):
    """Ranks waiting for each other fail after DIST.TIMEOUT_S (gloo's own default is 30 minutes)."""
    done = subprocess.run(_entry(tmp_path, "wait_for_each_other", procs=2, opts=("DIST.TIMEOUT_S", "2")),
                          env=_env(), cwd=REPO_ROOT, timeout=_TIMEOUT_S, capture_output=True, text=True)
    assert done.returncode != 0
    assert "wait_for_each_other failed: " in (tmp_path / "stdout.log").read_text()


def test_spawn_processes_end_with_their_launcher(tmp_path):
    """Killing the launching process of a NUM_CPU_PROCS 2 job whose ranks wait in torch.distributed ends
    the ranks and their data-loader workers."""
    job = subprocess.Popen(_entry(tmp_path, "workers_then_wait", procs=2), env=_env(), cwd=REPO_ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + _TIMEOUT_S
        while not all((tmp_path / f"pids{r}.json").exists() for r in range(2)):
            assert job.poll() is None and time.monotonic() < deadline, "the job did not start its workers"
            time.sleep(0.2)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    pids = _job_pids(tmp_path)
    survivors = _survivors(pids)
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == []
