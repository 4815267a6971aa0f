"""Every few-shot head on the same frozen episodes and the same backbone, as one table.

    python tools/compare_heads.py --heads ProtoNet OTAM TRX TAMT EMPNet LogReg --shots 1 5 \
        --cfg configs/EgoToy/FEWSHOT_SLOWFAST.yaml [KEY VALUE ...]

(`--cfg` comes last: everything after its yaml files is a KEY VALUE override.)

For each shot count the episodes are drawn once and frozen to OUTPUT_DIR/episodes_<W>w<K>s.json;
heads named in --train-heads are first meta-trained (TRAIN.PROTOCOL of the config, checkpoint
selection on DATA.VAL_SPLIT), the others are evaluated directly on the loaded backbone. Each run
writes to OUTPUT_DIR/<head>_<K>shot; the table (markdown) and OUTPUT_DIR/compare_heads.json collect
accuracy ± 95% CI.
"""
import argparse
import json
import os
from typing import Dict, List, Optional

from ego_fsar.engine.tester import test
from ego_fsar.engine.trainer import train
from ego_fsar.utils.launch import launch_job
from ego_fsar.utils.parser import load_config, save_config


def _summary(output_dir: str) -> Dict:
    with open(os.path.join(output_dir, "json_stats.log")) as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if r["_type"] == "fewshot_test"][-1]


def run_head(args, head: str, shot: int) -> Dict:
    """Train (if listed) and test one head at `shot` shots; returns its fewshot_test record."""
    cfg = load_config(args)
    out = os.path.join(cfg.OUTPUT_DIR, f"{head}_{shot}shot")
    cfg.FEW_SHOT.EPISODES_FILE = os.path.join(cfg.OUTPUT_DIR, f"episodes_{cfg.FEW_SHOT.WAY}w{shot}s.json")
    cfg.OUTPUT_DIR, cfg.HEAD.NAME, cfg.FEW_SHOT.SHOT = out, head, shot
    save_config(cfg)
    if head in args.train_heads:
        launch_job(cfg=cfg, func=train)
        cfg.TEST.CHECKPOINT_FILE_PATH = os.path.join(out, "checkpoints", "checkpoint_best.pyth")
    elif cfg.TRAIN.CHECKPOINT_FILE_PATH:
        cfg.TEST.CHECKPOINT_FILE_PATH = cfg.TRAIN.CHECKPOINT_FILE_PATH
    launch_job(cfg=cfg, func=test)
    return _summary(out)


def format_table(results: Dict[str, Dict[int, Dict]], shots: List[int], way: int) -> str:
    header = "| head | " + " | ".join(f"{way}-way {k}-shot" for k in shots) + " |"
    rows = [header, "|" + "---|" * (len(shots) + 1)]
    for head, by_shot in results.items():
        cells = [f"{by_shot[k]['acc']:.2f} ± {by_shot[k]['ci95']:.2f}" for k in shots]
        rows.append(f"| {head} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_files", nargs="+", required=True,
                        help="yaml config, optionally followed by KEY VALUE overrides (give it last)")
    parser.add_argument("--heads", nargs="+", default=["ProtoNet", "OTAM", "TRX", "TAMT", "EMPNet", "LogReg"])
    parser.add_argument("--train-heads", nargs="*", default=["TRX", "TAMT", "EMPNet"],
                        help="heads to meta-train before testing")
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--init_method", default=None, help="INIT_METHOD (default: the config's)")
    args = parser.parse_args(argv)
    files = [f for f in args.cfg_files if f.endswith((".yaml", ".yml"))]
    args.opts, args.cfg_files = args.cfg_files[len(files):], files
    results = {head: {shot: run_head(args, head, shot) for shot in args.shots} for head in args.heads}
    cfg = load_config(args)
    table = format_table(results, args.shots, cfg.FEW_SHOT.WAY)
    with open(os.path.join(cfg.OUTPUT_DIR, "compare_heads.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(table)
    return table


if __name__ == "__main__":
    main()
