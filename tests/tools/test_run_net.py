"""tools/run_net.py as users run it: train then test in one command, also inside torchrun."""
import json
import os
import subprocess
import sys

from ego_fsar.utils import checkpoint as cu
from tests.paths import REPO_ROOT
from tests.tools.tiny import tiny_cfg, write_cfg


def _fewshot_records(out_dir):
    with open(os.path.join(out_dir, "json_stats.log")) as f:
        return [r for r in map(json.loads, f) if r["_type"] == "fewshot_test"]


def test_run_net_in_torchrun_trains_then_tests(egotoy_root, tmp_path):
    cfg = tiny_cfg(egotoy_root, str(tmp_path / "out"))
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.EVAL_PERIOD = 1, 0
    cfg.TEST.PROTOCOL, cfg.TEST.SPLIT = "episodic", "test"
    path = write_cfg(cfg, tmp_path / "tiny.yaml")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29621",
                    os.path.join(REPO_ROOT, "tools", "run_net.py"), "--cfg", path, "DATA_LOADER.NUM_WORKERS", "0"],
                   check=True, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT), timeout=300)
    assert os.path.isfile(cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, 1))
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "config.yaml"))
    (record,) = _fewshot_records(cfg.OUTPUT_DIR)
    assert record["episodes"] == cfg.FEW_SHOT.TEST_EPISODES
