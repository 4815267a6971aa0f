"""launch_job: single process, 2-process CPU spawn (gloo), and joining a torchrun job."""
import json
import os
import subprocess
import sys

import torch
import torch.distributed as dist

from ego_fsar.config import get_cfg
from ego_fsar.utils import distributed as du
from ego_fsar.utils.launch import in_torchrun, launch_job
from tests.paths import REPO_ROOT


def record_world(cfg):
    """Write rank, world size and the all-reduced sum of ranks to OUTPUT_DIR/rank<r>.json."""
    total = torch.tensor([float(du.get_rank())])
    du.all_reduce([total], average=False)
    with open(os.path.join(cfg.OUTPUT_DIR, f"rank{du.get_rank()}.json"), "w") as f:
        json.dump({"rank": du.get_rank(), "world": du.get_world_size(), "sum": total.item(),
                   "backend": dist.get_backend() if du.is_dist() else None}, f)


def _cfg(tmp_path, procs):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.NUM_CPU_PROCS = procs
    cfg.OUTPUT_DIR = str(tmp_path)
    return cfg


def _read(tmp_path):
    return sorted((json.load(open(tmp_path / f)) for f in os.listdir(tmp_path) if f.startswith("rank")),
                  key=lambda r: r["rank"])


def test_single_process_no_process_group(tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    launch_job(_cfg(tmp_path, 1), "tcp://127.0.0.1:29581", record_world)
    assert _read(tmp_path) == [{"rank": 0, "world": 1, "sum": 0.0, "backend": None}]


def test_two_process_cpu_spawn_uses_gloo(tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert not in_torchrun()
    launch_job(_cfg(tmp_path, 2), "tcp://127.0.0.1:29582", record_world)
    records = _read(tmp_path)
    assert [r["rank"] for r in records] == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 1.0 and r["backend"] == "gloo" for r in records)


def test_torchrun_join(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    entry = os.path.join(REPO_ROOT, "tests", "utils", "torchrun_entry.py")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    "29583", entry, str(tmp_path)], check=True, env=env, cwd=REPO_ROOT, timeout=120)
    records = _read(tmp_path)
    assert [r["rank"] for r in records] == [0, 1]
    assert all(r["world"] == 2 and r["sum"] == 1.0 and r["backend"] == "gloo" for r in records)
