"""Run `launch_job` on a function of test_launch in a fresh process, as test_launch starts it:
`launch_entry.py OUTPUT_DIR FUNC [NUM_CPU_PROCS [KEY VALUE ...]]`, under torchrun or spawning NUM_CPU_PROCS
processes."""
import sys
from pathlib import Path

from ego_fsar.utils.launch import launch_job
from tests.utils import test_launch

if __name__ == "__main__":
    procs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    cfg = test_launch._cfg(Path(sys.argv[1]), procs)
    cfg.merge_from_list(sys.argv[4:])
    launch_job(cfg, getattr(test_launch, sys.argv[2]))
