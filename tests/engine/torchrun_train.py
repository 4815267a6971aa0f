"""Started by torchrun in test_train: joins the job through launch_job, trains, dumps its weights."""
import sys

from ego_fsar.config import get_cfg, merge_file
from ego_fsar.utils.launch import launch_job
from tests.engine.test_train import train_and_dump

if __name__ == "__main__":
    cfg = get_cfg()
    merge_file(cfg, sys.argv[1])
    launch_job(cfg, train_and_dump)
