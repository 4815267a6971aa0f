"""Auto-resume under DDP: every process resumes with its own RNG state (two gloo processes)."""
import os
import random
import shutil

import numpy as np
import torch

from ego_fsar.engine import trainer
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils.launch import launch_job
from tests.engine.test_train import tiny_train_cfg


def train_and_dump_state(cfg):
    """Train, then write this rank's parameters and final RNG states to OUTPUT_DIR/state_rank<r>.pt."""
    model = trainer.train(cfg)
    state = {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].copy(),
        "python": random.getstate(),
    }
    torch.save(state, os.path.join(cfg.OUTPUT_DIR, f"state_rank{du.get_rank()}.pt"))


def _states(out_dir):
    return [torch.load(os.path.join(out_dir, f"state_rank{r}.pt"), weights_only=False) for r in range(2)]


def test_ddp_resume_restores_each_rank_rng(cfg, tmp_path, monkeypatch):
    """Random crops (NUM_WORKERS 0) and dropout draw from each process's own RNG: a run resumed after
    epoch 1 ends in the same weights and RNG states, on every rank, as the uninterrupted run."""
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    full = tiny_train_cfg(cfg, tmp_path / "full")
    full.NUM_CPU_PROCS = 2
    full.TRAIN.EVAL_PERIOD = 0
    full.TRAIN.MAX_ITERS_PER_EPOCH = 2
    full.MODEL.DROPOUT_RATE = 0.5
    launch_job(full, train_and_dump_state)
    saved = torch.load(cu.get_path_to_checkpoint(full.OUTPUT_DIR, 1), weights_only=False)
    assert len(saved["rng_states"]) == 2
    assert not torch.equal(saved["rng_states"][0]["torch"], saved["rng_states"][1]["torch"])

    killed = tmp_path / "killed"  # a run killed after epoch 1: only the first checkpoint
    os.makedirs(killed / "checkpoints")
    shutil.copy(cu.get_path_to_checkpoint(full.OUTPUT_DIR, 1), killed / "checkpoints")
    resumed = full.clone()
    resumed.OUTPUT_DIR = str(killed)
    launch_job(resumed, train_and_dump_state)

    for rank, (a, b) in enumerate(zip(_states(full.OUTPUT_DIR), _states(resumed.OUTPUT_DIR))):
        assert torch.equal(a["torch"], b["torch"]), f"rank {rank}: torch RNG"
        assert np.array_equal(a["numpy"], b["numpy"]), f"rank {rank}: numpy RNG"
        assert a["python"] == b["python"], f"rank {rank}: python RNG"
        for key, value in a["params"].items():
            assert torch.equal(value, b["params"][key]), f"rank {rank}: {key}"
