"""One job of 4 processes (two emulated nodes of two: run_net under `torchrun --nnodes 2 --rdzv_backend c10d`,
gloo on loopback; its processes train then test in one process group) against one process with the same global batch: the same training, the same
episodic test, and an auto-resume on another number of processes.

What must be equal for the comparison to mean something (`_parity_cfg`):
- Data: the DistributedSampler's permutation depends on RNG_SEED and the epoch alone, and rank r of W takes
  positions r, r + W, ... of it, so the W shares of step k hold exactly the clips of the single process's
  batch k (TRAIN.BATCH_SIZE is the global batch: 8 = 4 x 2). Augmentation must not differ: each process draws
  from its own RNG (RNG_SEED + rank), so clips are read whole (32 px frames, 32 px crop, one 8-frame window:
  no random scale, crop, offset or flip).
- Model: BatchNorm normalises each process's share by that share's statistics, which no tolerance bridges;
  its parameters are frozen (MODEL.FREEZE), which keeps it in eval mode on fixed statistics, so a clip's
  output does not depend on the batch it is in. No dropout (each process draws its own mask). DDP starts
  every rank from rank 0's weights, which are the single process's (both seeded with RNG_SEED + 0).
- Gradient: each process's loss is the mean over its share and DDP averages gradients over the processes,
  i.e. the gradient of the mean over the global batch; the logged loss is the average over processes. The
  learning rate is not scaled (SOLVER.BASE_LR_SCALE_NUM_SHARDS False). What remains is the order of
  floating-point sums, hence the tolerance on losses and weights (the episodic test compares exactly).
"""
import json
import os
import shutil
import sys

import pytest
import torch

from ego_fsar.engine import trainer
from ego_fsar.engine.fewshot_test import EPISODES_JSON
from ego_fsar.engine.tester import test as run_test
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils.launch import free_port, launch_job
from tests.egotoy import egotoy_cfg
from tests.engine.test_train import tiny_train_cfg
from tests.paths import REPO_ROOT
from tests.tools.test_multinode import _run_nodes
from tests.tools.tiny import write_cfg

NODES, PROCS = 2, 2
# Float tolerance of losses and weights (sums in another order, over 4 steps).
RTOL, ATOL = 1e-4, 1e-5


def _parity_cfg(egotoy_root: str, out_dir: str):
    """2 epochs of 2 steps of 8 whole clips on a Slow R18 with frozen BatchNorm and no dropout, then 6
    episodes of 2-way 1-shot tested with ProtoNet (see the module docstring)."""
    cfg = tiny_train_cfg(egotoy_cfg(egotoy_root), out_dir)
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE = [32, 32], 32
    cfg.MODEL.FREEZE = ["bn\\."]
    cfg.MODEL.DROPOUT_RATE = 0.0
    cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.EVAL_PERIOD = 8, 0
    cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
    cfg.TEST.PROTOCOL = "episodic"
    return cfg


def _train_iters(out_dir: str):
    with open(os.path.join(out_dir, "json_stats.log")) as f:
        return [r for r in map(json.loads, f) if r["_type"] == "train_iter"]


def _checkpoint(out_dir: str, epoch: int):
    return torch.load(cu.get_path_to_checkpoint(out_dir, epoch), weights_only=False)


@pytest.fixture(scope="module")
def runs(egotoy_root, tmp_path_factory):
    """`single`: the config trained in this process; `job`: the same trained then tested episodically by
    run_net on two emulated nodes of two processes (its master writes the test episodes to the file)."""
    root = tmp_path_factory.mktemp("parity")
    single = _parity_cfg(egotoy_root, str(root / "single"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.train(single)
    finally:
        torch.set_num_threads(threads)
    job = _parity_cfg(egotoy_root, str(root / "job"))
    job.FEW_SHOT.EPISODES_FILE = str(root / "episodes.json")
    cfg_file = write_cfg(job, root / "job.yaml")
    port = free_port()
    _run_nodes([[sys.executable, "-m", "torch.distributed.run", "--nnodes", str(NODES), "--node_rank", str(i),
                 "--nproc_per_node", str(PROCS), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
                 "--rdzv_id", "parity", os.path.join(REPO_ROOT, "tools", "run_net.py"), "--cfg", cfg_file]
                for i in range(NODES)], root)
    return {"single": single, "job": job, "root": root}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=RTOL, atol=ATOL, msg=key)


def test_four_processes_train_as_one_with_the_same_global_batch(runs):
    single, job = runs["single"].OUTPUT_DIR, runs["job"].OUTPUT_DIR
    assert len(_checkpoint(job, 2)["rng_states"]) == NODES * PROCS, "the job did not run 4 processes"
    ours, theirs = _train_iters(single), _train_iters(job)
    assert [(r["epoch"], r["iter"]) for r in theirs] == [(r["epoch"], r["iter"]) for r in ours]
    assert len(ours) == 4 and len({r["loss"] for r in ours}) == 4
    assert [r["loss"] for r in theirs] == pytest.approx([r["loss"] for r in ours], rel=RTOL, abs=ATOL)
    final = _checkpoint(single, 2)["model_state"]
    _assert_same_weights(final, _checkpoint(job, 2)["model_state"])
    first = _checkpoint(single, 1)["model_state"]
    assert any(not torch.allclose(final[k], first[k], rtol=RTOL, atol=ATOL) for k in final), "epoch 2 learned nothing"


def test_episodic_test_split_over_ranks_equals_one_process(runs, tmp_path):
    """The job's test (6 episodes over 4 ranks: 2, 2, 1, 1) and one process testing the same checkpoint on
    the same episodes file give the same accuracy of every episode, exactly."""
    cfg = runs["job"].clone()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.CHECKPOINT_FILE_PATH = cu.get_last_checkpoint(runs["job"].OUTPUT_DIR)
    summary = run_test(cfg)
    with open(os.path.join(runs["job"].OUTPUT_DIR, EPISODES_JSON)) as f:
        theirs = json.load(f)
    with open(tmp_path / EPISODES_JSON) as f:
        ours = json.load(f)
    assert theirs["episodes"] == ours["episodes"] and len(ours["episodes"]) == cfg.FEW_SHOT.TEST_EPISODES
    assert theirs["summary"]["acc"] == summary["acc"] and theirs["summary"] == ours["summary"]


@pytest.mark.parametrize("source, procs", [("job", 1), ("single", 2)])
def test_auto_resume_on_another_number_of_processes(runs, tmp_path, monkeypatch, source, procs):
    """A run killed during epoch 2 (4 processes, or one) leaves its epoch-1 checkpoint; TRAIN.AUTO_RESUME on
    `procs` processes restores epoch, weights and optimizer (momentum) and trains epoch 2 as the uninterrupted
    runs did: same losses and final weights. Rank r takes rank r's saved RNG state, a rank beyond them keeps
    its seeded one; the data do not depend on them here (see the module docstring)."""
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    killed = tmp_path / "killed"
    os.makedirs(cu.get_checkpoint_dir(str(killed)))
    shutil.copy(cu.get_path_to_checkpoint(runs[source].OUTPUT_DIR, 1), cu.get_checkpoint_dir(str(killed)))
    assert len(_checkpoint(str(killed), 1)["rng_states"]) != procs
    resumed = runs["single"].clone()
    resumed.OUTPUT_DIR, resumed.NUM_CPU_PROCS = str(killed), procs
    launch_job(resumed, trainer.train)
    assert "Auto-resuming from" in (killed / "stdout.log").read_text()
    iters = _train_iters(str(killed))
    uninterrupted = [r for r in _train_iters(runs["single"].OUTPUT_DIR) if r["epoch"].startswith("2/")]
    assert [(r["epoch"], r["iter"]) for r in iters] == [(r["epoch"], r["iter"]) for r in uninterrupted]
    assert [r["loss"] for r in iters] == pytest.approx([r["loss"] for r in uninterrupted], rel=RTOL, abs=ATOL)
    final = _checkpoint(str(killed), 2)
    assert len(final["rng_states"]) == procs
    _assert_same_weights(_checkpoint(runs["single"].OUTPUT_DIR, 2)["model_state"], final["model_state"])
