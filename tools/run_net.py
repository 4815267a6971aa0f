"""Train and/or test as the config says: `python tools/run_net.py --cfg configs/X.yaml [KEY VALUE ...]`."""
import os
from typing import List, Optional

from ego_fsar.engine.tester import test
from ego_fsar.engine.trainer import train
from ego_fsar.utils.launch import launch_job
from ego_fsar.utils.parser import load_config, parse_args, save_config


def main(argv: Optional[List[str]] = None) -> None:
    """Run `argv` (default sys.argv[1:]); tools/submit.py runs each node's share of a SLURM job through it."""
    args = parse_args(argv)
    paths = args.cfg_files or [None]
    for path in paths:
        cfg = load_config(args, path)
        if int(os.environ.get("RANK", 0)) == 0:
            save_config(cfg)
        if cfg.TRAIN.ENABLE:
            launch_job(cfg=cfg, func=train)
        if cfg.TEST.ENABLE:
            launch_job(cfg=cfg, func=test)


if __name__ == "__main__":
    main()
