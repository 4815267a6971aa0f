"""Run `reduce_until_killed` of test_kill_rank through launch_job in a fresh process, as test_kill_rank
starts it: `kill_entry.py OUTPUT_DIR NUM_CPU_PROCS [KEY VALUE ...]`, under torchrun or spawning
NUM_CPU_PROCS processes."""
import sys
from pathlib import Path

from ego_fsar.utils.launch import launch_job
from tests.utils import test_kill_rank
from tests.utils.test_launch import _cfg

if __name__ == "__main__":
    cfg = _cfg(Path(sys.argv[1]), int(sys.argv[2]))
    cfg.merge_from_list(sys.argv[3:])
    launch_job(cfg, test_kill_rank.reduce_until_killed)
