"""Two emulated nodes of two CPU processes each (gloo on loopback), started as a multi-node job is:
run_net's `--num_shards 2 --shard_id i --init_method tcp://...`, or `torchrun --nnodes 2 --node_rank i
--rdzv_backend c10d`. A tiny training must see one job of 4 ranks: TRAIN.BATCH_SIZE split over them,
SOLVER.BASE_LR_SCALE_NUM_SHARDS scaling the learning rate by the 2 nodes, identical weights on every rank."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from ego_fsar.engine import trainer
from ego_fsar.engine.protocols import get_protocol
from ego_fsar.utils import distributed as du
from ego_fsar.utils.launch import free_port
from tests.engine.test_train import _initial_params, tiny_train_cfg
from tests.paths import REPO_ROOT
from tests.tools.tiny import write_cfg

NODES, PROCS = 2, 2
BASE_LR = 0.05
# Bound on the whole job: it fails (never hangs) past it. Four processes share this machine's CPUs.
JOB_TIMEOUT_S = 240


def train_and_record(cfg):
    """Train, then write this rank's world size, per-process batch size, iterations per epoch, learning
    rate and weights to OUTPUT_DIR/rank<r>.pt."""
    model = trainer.train(cfg)
    train_loader = get_protocol(cfg).loader(cfg, cfg.DATA.TRAIN_SPLIT)
    record = {"world": du.get_world_size(), "batch": train_loader.batch_size, "iters": len(train_loader),
              "base_lr": cfg.SOLVER.BASE_LR,
              "params": {k: v.detach().clone() for k, v in model.named_parameters()}}
    torch.save(record, os.path.join(cfg.OUTPUT_DIR, f"rank{du.get_rank()}.pt"))


def _node_commands(style: str, cfg_file: str):
    entry = os.path.join(REPO_ROOT, "tests", "tools", "multinode_entry.py")
    port = free_port()
    if style == "num_shards":
        return [[sys.executable, entry, "--cfg", cfg_file, "--num_shards", str(NODES), "--shard_id", str(i),
                 "--init_method", f"tcp://127.0.0.1:{port}"] for i in range(NODES)]
    return [[sys.executable, "-m", "torch.distributed.run", "--nnodes", str(NODES), "--node_rank", str(i),
             "--nproc_per_node", str(PROCS), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
             "--rdzv_id", "multinode-test", entry, "--cfg", cfg_file] for i in range(NODES)]


def _run_nodes(commands, out_dir):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        env.pop(var, None)
    logs = [open(out_dir / f"node{i}.log", "w") for i in range(len(commands))]
    nodes = [subprocess.Popen(c, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
             for c, log in zip(commands, logs)]
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        codes = [node.wait(timeout=max(1.0, deadline - time.monotonic())) for node in nodes]
    finally:
        for node, log in zip(nodes, logs):
            if node.poll() is None:
                node.kill()
            log.close()
    tails = "\n".join((out_dir / f"node{i}.log").read_text()[-3000:] for i in range(len(commands)))
    assert codes == [0] * len(commands), tails


@pytest.mark.parametrize("style", ["num_shards", "torchrun"])
def test_two_nodes_of_two_processes_train_as_one_job(cfg, tmp_path, style):
    cfg = tiny_train_cfg(cfg, tmp_path / "out")
    cfg.NUM_CPU_PROCS = PROCS
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.EVAL_PERIOD, cfg.TRAIN.BATCH_SIZE = 1, 0, 4
    cfg.SOLVER.BASE_LR, cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS = BASE_LR, True
    cfg_file = write_cfg(cfg, tmp_path / "cfg.yaml")
    os.makedirs(cfg.OUTPUT_DIR)
    _run_nodes(_node_commands(style, cfg_file), tmp_path)

    world = NODES * PROCS
    records = [torch.load(os.path.join(cfg.OUTPUT_DIR, f"rank{r}.pt")) for r in range(world)]
    with open(os.path.join(cfg.OUTPUT_DIR, "json_stats.log")) as f:
        iters = [json.loads(line) for line in f if '"train_iter"' in line]
    for record in records:
        assert record["world"] == world and record["batch"] * world == cfg.TRAIN.BATCH_SIZE
        assert record["base_lr"] == pytest.approx(BASE_LR * NODES)
        assert record["iters"] == records[0]["iters"] > 0
        for key, value in records[0]["params"].items():
            assert torch.equal(record["params"][key], value), key
    initial = _initial_params(cfg)
    assert any(not torch.equal(v, initial[k]) for k, v in records[0]["params"].items()), "training changed nothing"
    assert len(iters) == records[0]["iters"]
    assert iters[0]["lr"] == pytest.approx(BASE_LR * NODES)
