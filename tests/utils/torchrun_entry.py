"""Started by torchrun in test_launch: joins the job through launch_job and records its rank."""
import sys
from pathlib import Path

from ego_fsar.utils.launch import launch_job
from tests.utils.test_launch import _cfg, record_world

if __name__ == "__main__":
    launch_job(_cfg(Path(sys.argv[1]), 1), "env://", record_world)
