"""The training loop end to end on a tiny EgoToy: stats, checkpoints, NaN stop, resume, DDP, AMP."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from ego_fsar.engine import trainer
from ego_fsar.engine.common import channels_last_3d
from ego_fsar.engine.tester import test as run_test
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils.launch import free_port, launch_job
from tests.paths import REPO_ROOT
from tests.tensorboard_events import read_scalars


def tiny_train_cfg(cfg, out_dir, arch="slow"):
    """A 2-epoch classifier on the tiny EgoToy's 4 source classes."""
    cfg.OUTPUT_DIR = str(out_dir)
    cfg.NUM_GPUS = 0
    cfg.MODEL.ARCH = arch
    cfg.MODEL.MODEL_NAME = "SlowFast" if arch == "slowfast" else "ResNet"
    cfg.DATA.INPUT_CHANNEL_NUM = [3, 3] if arch == "slowfast" else [3]
    cfg.SLOWFAST.ALPHA = 2
    cfg.RESNET.DEPTH, cfg.RESNET.WIDTH_PER_GROUP = 18, 8 if arch == "slowfast" else 4
    cfg.RESNET.NUM_BLOCK_TEMP_KERNEL = [[2, 2]] * 4
    cfg.RESNET.SPATIAL_STRIDES = [[1, 1], [2, 2], [2, 2], [2, 2]]
    cfg.RESNET.SPATIAL_DILATIONS = [[1, 1]] * 4
    cfg.NONLOCAL.LOCATION = [[[], []]] * 4
    cfg.NONLOCAL.GROUP = [[1, 1]] * 4
    cfg.DATA.RANDOM_FLIP = False
    cfg.SOLVER.MAX_EPOCH = 2
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.WARMUP_EPOCHS = 0.0
    cfg.TRAIN.EVAL_PERIOD = 1
    cfg.TRAIN.CHECKPOINT_PERIOD = 1
    cfg.LOG_PERIOD = 1
    cfg.LOG_MODEL_INFO = False
    cfg.TEST.SPLIT = "test"
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY = 2, 1, 2
    cfg.FEW_SHOT.TEST_EPISODES = 6
    return cfg


def _json_stats(out_dir):
    with open(os.path.join(out_dir, "json_stats.log")) as f:
        return [json.loads(line) for line in f]


def test_train_then_episodic_test(cfg, tmp_path):
    cfg = tiny_train_cfg(cfg, tmp_path, arch="slowfast")
    cfg.TENSORBOARD.ENABLE = True
    trainer.train(cfg)
    stats = _json_stats(tmp_path)
    types = [s["_type"] for s in stats]
    assert {"train_iter", "train_epoch", "val_epoch"} <= set(types)
    epoch = next(s for s in stats if s["_type"] == "train_epoch")
    assert {"epoch", "loss", "lr", "top1_err", "top5_err", "dt", "eta", "gpu_mem", "RAM"} <= set(epoch)
    it = next(s for s in stats if s["_type"] == "train_iter")
    assert {"epoch", "iter", "loss", "lr", "top1_err", "dt", "eta", "RAM", "gpu_mem"} <= set(it)
    assert os.path.isfile(cu.get_path_to_checkpoint(str(tmp_path), 1))
    assert os.path.isfile(cu.get_path_to_checkpoint(str(tmp_path), 2))
    assert os.path.isfile(os.path.join(tmp_path, "checkpoints", cu.BEST_CHECKPOINT))
    assert os.path.isfile(os.path.join(tmp_path, "stdout.log"))
    assert glob.glob(os.path.join(tmp_path, "runs-*", "events.out.tfevents.*"))

    cfg.TEST.PROTOCOL = "episodic"
    summary = run_test(cfg)
    assert summary["episodes"] == 6 and (summary["way"], summary["shot"], summary["query"]) == (2, 1, 2)
    assert 0.0 <= summary["acc"] <= 100.0 and summary["ci95"] >= 0.0
    record = [s for s in _json_stats(tmp_path) if s["_type"] == "fewshot_test"][-1]
    assert record["acc"] == pytest.approx(summary["acc"])
    log = open(os.path.join(tmp_path, "stdout.log")).read()
    assert "acc = " in log and "(95% CI, 6 episodes)" in log
    assert os.path.isfile(os.path.join(tmp_path, "episodes.json"))
    assert os.path.isfile(os.path.join(tmp_path, "episode_accuracy_hist.png"))
    scalars = read_scalars(str(tmp_path))
    assert {"Train/loss", "Train/epoch_loss", "Val/top1_err"} <= set(scalars)
    assert scalars["Test/acc"] == [(0, pytest.approx(summary["acc"]))] and scalars["Test/episodes"] == [(0, 6.0)]
    episode_accs = [100.0 * e["acc"] for e in json.load(open(os.path.join(tmp_path, "episodes.json")))["episodes"]]
    assert scalars["Test/episode_acc"] == [(i, pytest.approx(acc)) for i, acc in enumerate(episode_accs)]


def test_multiview_test(cfg, tmp_path):
    cfg = tiny_train_cfg(cfg, tmp_path)
    cfg.SOLVER.MAX_EPOCH = 1
    cfg.TRAIN.EVAL_PERIOD = 0
    trainer.train(cfg)
    cfg.TEST.SPLIT = "val"
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    metrics = run_test(cfg)
    assert metrics["_type"] == "test_final" and "top1_acc" in metrics


def test_nan_loss_stops_naming_epoch_and_iteration(cfg, tmp_path, monkeypatch):
    cfg = tiny_train_cfg(cfg, tmp_path)
    real_build = trainer.build_loss

    def nan_on_second_call(cfg_):
        criterion = real_build(cfg_)
        calls = []

        def wrapped(outputs, labels):
            loss, parts = criterion(outputs, labels)
            calls.append(1)
            return (loss * float("nan") if len(calls) == 2 else loss), parts

        return wrapped

    monkeypatch.setattr(trainer, "build_loss", nan_on_second_call)
    with pytest.raises(FloatingPointError, match="epoch 1, iteration 2"):
        trainer.train(cfg)


def test_resume_reproduces_uninterrupted_run(cfg, tmp_path):
    full = tiny_train_cfg(cfg.clone(), tmp_path / "full")
    full.TRAIN.EVAL_PERIOD = 0
    full.MODEL.DROPOUT_RATE = 0.5
    trainer.train(full)
    # A run killed after epoch 1: its folder holds only the first checkpoint.
    killed = tmp_path / "killed"
    os.makedirs(killed / "checkpoints")
    shutil.copy(cu.get_path_to_checkpoint(str(tmp_path / "full"), 1), killed / "checkpoints")
    resumed = full.clone()
    resumed.OUTPUT_DIR = str(killed)
    trainer.train(resumed)
    a = torch.load(cu.get_path_to_checkpoint(str(tmp_path / "full"), 2), weights_only=False)
    b = torch.load(cu.get_path_to_checkpoint(str(killed), 2), weights_only=False)
    assert a["epoch"] == b["epoch"] == 1
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key


def test_grad_accumulation_steps(cfg, tmp_path, monkeypatch):
    cfg = tiny_train_cfg(cfg, tmp_path)
    cfg.SOLVER.MAX_EPOCH = 1
    cfg.TRAIN.EVAL_PERIOD = 0
    cfg.TRAIN.GRAD_ACCUM_STEPS = 2
    cfg.TRAIN.BATCH_SIZE = 2
    steps = []
    real_step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: (steps.append(1), real_step(self, *a, **k))[1])
    trainer.train(cfg)
    iters = len([s for s in _json_stats(tmp_path) if s["_type"] == "train_iter"])
    assert iters == 8 and len(steps) == 4


def test_cpu_bf16_mixed_precision(cfg, tmp_path):
    cfg = tiny_train_cfg(cfg, tmp_path)
    cfg.SOLVER.MAX_EPOCH = 1
    cfg.TRAIN.EVAL_PERIOD = 0
    cfg.TRAIN.MIXED_PRECISION = True
    cfg.MIXED_PRECISION.DTYPE = "bf16"
    trainer.train(cfg)
    ckpt = torch.load(cu.get_path_to_checkpoint(str(tmp_path), 1), weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values() if v.is_floating_point())


def train_and_dump(cfg):
    """Train, then write this rank's parameters to OUTPUT_DIR/params_rank<r>.pt (for the DDP tests)."""
    model = trainer.train(cfg)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    torch.save(params, os.path.join(cfg.OUTPUT_DIR, f"params_rank{du.get_rank()}.pt"))


def _assert_ranks_identical(out_dir, initial):
    p0 = torch.load(os.path.join(out_dir, "params_rank0.pt"))
    p1 = torch.load(os.path.join(out_dir, "params_rank1.pt"))
    assert p0.keys() == p1.keys()
    for key in p0:
        assert torch.equal(p0[key], p1[key]), key
    assert any(not torch.equal(p0[k], initial[k]) for k in p0), "training did not change the weights"


def _ddp_cfg(cfg, out_dir):
    cfg = tiny_train_cfg(cfg, out_dir)
    cfg.SOLVER.MAX_EPOCH = 1
    cfg.TRAIN.EVAL_PERIOD = 0
    cfg.NUM_CPU_PROCS = 2
    return cfg


def _initial_params(cfg):
    from ego_fsar.models import build_model
    from ego_fsar.utils.env import seed_everything

    seed_everything(cfg.RNG_SEED)
    return {k: v.detach().clone() for k, v in build_model(cfg).named_parameters()}


def test_ddp_two_process_spawn_identical_weights(cfg, tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cfg = _ddp_cfg(cfg, tmp_path)
    launch_job(cfg, train_and_dump)
    _assert_ranks_identical(tmp_path, _initial_params(cfg))


def test_ddp_torchrun_identical_weights(cfg, tmp_path):
    cfg = _ddp_cfg(cfg, tmp_path)
    cfg.NUM_CPU_PROCS = 1
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.dump())
    entry = os.path.join(REPO_ROOT, "tests", "engine", "torchrun_train.py")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", str(free_port()),
                    entry, str(path)], check=True, env=dict(os.environ, PYTHONPATH=REPO_ROOT), cwd=REPO_ROOT,
                   timeout=300)
    _assert_ranks_identical(tmp_path, _initial_params(cfg))


def test_channels_last_converts_only_3d_convolutions():
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.Conv2d(4, 4, 3), torch.nn.Linear(4, 2))
    channels_last_3d(model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert model[1].weight.is_contiguous() and model[2].weight.is_contiguous()


def test_cpu_run_never_calls_cuda(cfg, tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a NUM_GPUS 0 run called CUDA")

    for name in ("is_available", "current_device", "set_device", "device_count", "synchronize",
                 "max_memory_allocated", "is_bf16_supported", "memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, refuse)
    cfg = tiny_train_cfg(cfg, tmp_path)
    cfg.SOLVER.MAX_EPOCH = 1
    cfg.TRAIN.MIXED_PRECISION = True
    cfg.MIXED_PRECISION.DTYPE = "auto"
    trainer.train(cfg)
    cfg.TEST.PROTOCOL = "episodic"
    assert run_test(cfg)["episodes"] == cfg.FEW_SHOT.TEST_EPISODES


def test_precise_bn_recomputes_statistics(cfg, tmp_path):
    runs = {}
    for precise in (False, True):
        run = tiny_train_cfg(cfg.clone(), tmp_path / str(precise))
        run.SOLVER.MAX_EPOCH, run.TRAIN.EVAL_PERIOD = 1, 0
        run.BN.USE_PRECISE_STATS, run.BN.NUM_BATCHES_PRECISE = precise, 2
        trainer.train(run)
        runs[precise] = torch.load(cu.get_path_to_checkpoint(run.OUTPUT_DIR, 1), weights_only=False)["model_state"]
    means = [k for k in runs[True] if k.endswith("running_mean")]
    assert means and any(not torch.equal(runs[True][k], runs[False][k]) for k in means)
    weights = [k for k in runs[True] if k.endswith("conv.weight")]
    assert all(torch.equal(runs[True][k], runs[False][k]) for k in weights)
