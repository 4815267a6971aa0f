"""Command-line parsing and config loading, PySlowFast style.

Accepted forms (all combinable):
    run_net.py --cfg A.yaml [B.yaml ...] [KEY VALUE ...]
    run_net.py --cfg A.yaml --opts KEY VALUE ...
    run_net.py --cfg A.yaml --shard_id 1 --num_shards 2 --init_method tcp://host:port
"""
import argparse
import os
from typing import List, Optional

from ego_fsar.config import CfgNode, assert_and_infer_cfg, get_cfg
from ego_fsar.utils.atomic_file import atomic_write

_YAML_SUFFIXES = (".yaml", ".yml")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse `argv` (default sys.argv); `cfg_files` holds the yaml files, `opts` the overrides."""
    parser = argparse.ArgumentParser(description="ego_fsar: train / test video models and few-shot heads")
    parser.add_argument("--cfg", dest="cfg_files", nargs="+", default=[],
                        help="yaml config file(s), optionally followed by KEY VALUE overrides")
    parser.add_argument("--opts", dest="opts_flag", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE overrides")
    parser.add_argument("--shard_id", type=int, default=0, help="index of this node")
    parser.add_argument("--num_shards", type=int, default=1, help="number of nodes")
    parser.add_argument("--init_method", default=None,
                        help="INIT_METHOD: distributed init method of spawned processes (tcp://host:port, "
                             "file://..., auto)")
    parser.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=None,
                        help="passed by torch.distributed.launch; the job reads LOCAL_RANK from the environment")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    files = [f for f in args.cfg_files if f.endswith(_YAML_SUFFIXES)]
    # Tokens after the yaml files in --cfg are positional overrides (what users type).
    first_opt = len(files)
    if args.cfg_files[:first_opt] != files:
        raise SystemExit(f"--cfg: yaml files must come before KEY VALUE overrides, got {args.cfg_files}")
    args.opts = list(args.cfg_files[first_opt:]) + list(args.opts or []) + list(args.opts_flag or [])
    args.cfg_files = files
    return args


def positive_int(text: str) -> int:
    """An argparse `type` accepting integers >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def load_config(args: argparse.Namespace, path_to_config: Optional[str] = None) -> CfgNode:
    """Defaults <- yaml file (`path_to_config`, or every file in `args.cfg_files`) <- overrides."""
    cfg = get_cfg()
    paths = [path_to_config] if path_to_config is not None else list(getattr(args, "cfg_files", []))
    for path in paths:
        cfg.merge_from_file(path)
    cfg.merge_from_list(getattr(args, "opts", []) or [], source="command line")
    if hasattr(args, "num_shards") and hasattr(args, "shard_id"):
        if args.num_shards != 1 or args.shard_id != 0:
            cfg.NUM_SHARDS = args.num_shards
            cfg.SHARD_ID = args.shard_id
    if getattr(args, "init_method", None):
        cfg.INIT_METHOD = args.init_method
    return assert_and_infer_cfg(cfg)


def save_config(cfg: CfgNode) -> str:
    """Write the resolved config to OUTPUT_DIR/config.yaml (atomically) and return the path."""
    path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    atomic_write(path, lambda f: f.write(cfg.dump()), "w")
    return path
