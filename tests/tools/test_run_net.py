"""tools/run_net.py as users run it: train then test in one command, also inside torchrun and
torch.distributed.launch; a failed run leaves its error in stdout.log."""
import json
import os
import subprocess
import sys

import pytest

from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils.launch import free_port
from ego_fsar.utils.parser import load_config, parse_args
from tests.paths import REPO_ROOT
from tests.tools.tiny import load_tool, tiny_cfg, write_cfg


def _fewshot_records(out_dir):
    with open(os.path.join(out_dir, "json_stats.log")) as f:
        return [r for r in map(json.loads, f) if r["_type"] == "fewshot_test"]


def test_run_net_in_torchrun_trains_then_tests(egotoy_root, tmp_path):
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "out"))
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.EVAL_PERIOD = 1, 0
    cfg.TEST.PROTOCOL, cfg.TEST.SPLIT = "episodic", "test"
    path = write_cfg(cfg, tmp_path / "tiny.yaml")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", str(free_port()),
                    os.path.join(REPO_ROOT, "tools", "run_net.py"), "--cfg", path, "DATA_LOADER.NUM_WORKERS", "0"],
                   check=True, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=300)
    assert os.path.isfile(cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, 1))
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "config.yaml"))
    (record,) = _fewshot_records(cfg.OUTPUT_DIR)
    assert record["episodes"] == cfg.FEW_SHOT.TEST_EPISODES


def test_failed_training_ends_stdout_log_with_the_error(egotoy_root, tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "out"))
    cfg.DATA.PATH_PREFIX = str(tmp_path / "missing")
    monkeypatch.setattr(sys, "argv", ["run_net.py", "--cfg", write_cfg(cfg, tmp_path / "tiny.yaml")])
    with pytest.raises(FileNotFoundError):
        load_tool("run_net").main()
    log = (tmp_path / "out" / "stdout.log").read_text().splitlines()
    assert any("Training with config" in line for line in log)
    assert "Traceback (most recent call last):" in log
    assert log[-1].startswith("[rank 0] train failed: FileNotFoundError: EgoToy annotations not found")


@pytest.mark.parametrize("flag", ["--local-rank=1", "--local_rank=1"])
def test_accepts_local_rank_of_torch_distributed_launch(egotoy_root, tmp_path, flag):
    path = write_cfg(tiny_cfg(egotoy_root, str(tmp_path)), tmp_path / "tiny.yaml")
    args = parse_args([flag, "--cfg", path, "SOLVER.MAX_EPOCH", "3"])
    assert args.local_rank == 1
    assert load_config(args, path).SOLVER.MAX_EPOCH == 3


def test_init_method_of_the_yaml_unless_given(egotoy_root, tmp_path):
    cfg = tiny_cfg(egotoy_root, str(tmp_path))
    cfg.INIT_METHOD = "tcp://127.0.0.1:2345"
    path = write_cfg(cfg, tmp_path / "tiny.yaml")
    assert load_config(parse_args(["--cfg", path]), path).INIT_METHOD == "tcp://127.0.0.1:2345"
    args = parse_args(["--cfg", path, "--init_method", "tcp://10.0.0.1:1234"])
    assert load_config(args, path).INIT_METHOD == "tcp://10.0.0.1:1234"


def test_run_net_in_torch_distributed_launch(egotoy_root, tmp_path):
    """The deprecated launcher passes --local-rank=N to the script (PySlowFast users start jobs so)."""
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "out"))
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.EVAL_PERIOD, cfg.TEST.ENABLE = 1, 0, False
    path = write_cfg(cfg, tmp_path / "tiny.yaml")
    subprocess.run([sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node", "2", "--master_port",
                    str(free_port()), os.path.join(REPO_ROOT, "tools", "run_net.py"), "--cfg", path],
                   check=True, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=300)
    assert os.path.isfile(cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, 1))
