"""Print parameters, trainable parameters and fvcore GFLOPs per clip of the models of configs.

    python tools/model_stats.py --cfg configs/A.yaml configs/B.yaml [KEY VALUE ...]

One row per config file (KEY VALUE overrides apply to each); models are built on the CPU, the
freezing policy (MODEL.FREEZE / MODEL.TRAINABLE) is applied, and FLOPs are counted for one clip of
DATA.TRAIN_CROP_SIZE (fvcore: a multiply-add is one FLOP).
"""
import os
import sys
from typing import Dict, List, Optional

import torch

from ego_fsar.models import build_model
from ego_fsar.models.freeze import apply_freeze
from ego_fsar.models.stats import clip_shapes, model_stats
from ego_fsar.utils.parser import load_config, parse_args

_COLUMNS = ("config", "model", "params", "trainable", "GFLOPs", "clip (C x T x H x W)")


def stats_rows(cfg_files: List[str], args) -> List[Dict[str, str]]:
    """One formatted row per config file."""
    rows = []
    for path in cfg_files:
        cfg = load_config(args, path)
        cfg.NUM_GPUS = 0
        model = build_model(cfg)
        apply_freeze(model, cfg)
        stats = model_stats(model, cfg)
        backbone = type(model.backbone).__name__ if hasattr(model, "backbone") else ""
        rows.append({
            "config": os.path.basename(path),
            "model": f"{cfg.MODEL.MODEL_NAME}/{backbone}" if backbone else cfg.MODEL.MODEL_NAME,
            "params": f"{stats['params']:,}",
            "trainable": f"{stats['trainable']:,}",
            "GFLOPs": f"{stats['gflops']:.2f}",
            "clip (C x T x H x W)": " + ".join("x".join(map(str, s)) for s in clip_shapes(cfg)),
        })
    return rows


def format_table(rows: List[Dict[str, str]]) -> str:
    """Rows as an aligned text table."""
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in _COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in _COLUMNS), "  ".join("-" * widths[c] for c in _COLUMNS)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in _COLUMNS) for r in rows]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if not args.cfg_files:
        raise SystemExit("model_stats.py: give at least one config: --cfg A.yaml [B.yaml ...] [KEY VALUE ...]")
    with torch.no_grad():
        print(format_table(stats_rows(args.cfg_files, args)))


if __name__ == "__main__":
    main(sys.argv[1:])
