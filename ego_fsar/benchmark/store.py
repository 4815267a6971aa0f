"""`store`: what the on-disk feature store (tools/extract_features.py, FEW_SHOT.FEATURE_STORE) costs
and saves, on TEST.DATASET / TEST.SPLIT with the test checkpoint's backbone.

Extraction: seconds of `extract_store` writing a new store against the plain forward it saves (the same
batches of the same clips through the same backbone, `iter_features` without writing), repeated
interleaved (alternating which runs first) after a one-batch warm-up; medians and their ratio.

Episodic test: N way-shot ProtoNet episodes read from that store (opening it included, `run_episodes`
with FEW_SHOT.EPISODE_BATCH and with 1) against one backbone pass over the clips (the forward's
median), against the in-memory feature cache (its extraction excluded), and against the test without
any cache (FEW_SHOT.USE_FEATURE_CACHE False), timed on the first few episodes and extrapolated per
episode to N. The peak resident memory is that of a fresh process
running the episodic test from the store (`episodic_test` with FEW_SHOT.FEATURE_STORE, model None).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from ego_fsar.config import get_cfg
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import Episode, episodes_for_cfg
from ego_fsar.engine import episode_runner
from ego_fsar.engine.episode_runner import run_episodes
from ego_fsar.engine.episodic_validation import pool_labels
from ego_fsar.engine.fewshot_test import episodic_test
from ego_fsar.engine.tester import build_test_model
from ego_fsar.features import store as fs
from ego_fsar.features.extract import chunks, extract_store, iter_features, process_batch_size
from ego_fsar.features.identity import dataset_source, run_identity
from ego_fsar.features.store import FeatureStore
from ego_fsar.models import build_head
from ego_fsar.utils import checkpoint as cu
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.parser import positive_int

from .report import device_line, format_table
from .timing import time_calls, timed

EXTRACTION_GOAL, STORE_GOAL, UNCACHED_GOAL = 1.05, 1.1, 50.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `bench_store`."""
    parser.add_argument("--episodes", type=positive_int, default=10_000, help="episodes read from the store")
    parser.add_argument("--uncached-episodes", type=positive_int, default=20,
                        help="episodes (the first ones) timed without the cache, extrapolated to --episodes")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="interleaved runs of the extraction and the forward")
    parser.add_argument("--way", type=positive_int, default=5, help="classes per episode (FEW_SHOT.WAY)")
    parser.add_argument("--shot", type=positive_int, default=1, help="support clips per class (FEW_SHOT.SHOT)")


def store_batches(cfg: CfgNode, num_items: int) -> List[List[int]]:
    """The batches of dataset items that `extract_store` runs in one process: shard by shard, chunks of
    the process batch size."""
    size = cfg.FEATURES.SHARD_SIZE
    return [b for s in range(fs.num_shards(num_items, size))
            for b in chunks(fs.shard_items(s, num_items, size), process_batch_size(cfg))]


def forward_pass(backbone: torch.nn.Module, dataset: Dataset, batches: List[List[int]], cfg: CfgNode) -> int:
    """Run the backbone over `batches` as the extraction does, keeping nothing; returns the clips read."""
    return sum(len(batch.items) for batch in iter_features(backbone, dataset, batches, cfg))


def _time_extraction(backbone, dataset, cfg: CfgNode, identity: Dict, work_dir: str, repeats: int
                     ) -> Tuple[List[float], List[float], str, int]:
    """(forward seconds, store seconds) of `repeats` interleaved runs, the last store's folder and the
    clips each forward read."""
    batches = store_batches(cfg, len(dataset))
    forward_pass(backbone, dataset, batches[:1], cfg)  # warm-up: loader, allocator
    forward_s, store_s, store_dir, clips = [], [], "", 0
    for r in range(repeats):
        for kind in (("forward", "store") if r % 2 == 0 else ("store", "forward")):
            if kind == "forward":
                seconds, clips = timed(forward_pass, backbone, dataset, batches, cfg, device=device_for(cfg))
                forward_s.append(seconds)
            else:
                if store_dir:
                    shutil.rmtree(store_dir)
                store_dir = os.path.join(work_dir, f"store_{r}")
                store_s.append(timed(extract_store, backbone, dataset, cfg, store_dir, identity,
                                     device=device_for(cfg))[0])
    return forward_s, store_s, store_dir, clips


def episode_cfg(cfg: CfgNode, options: argparse.Namespace) -> CfgNode:
    """`cfg` for the benchmarked episodes: --way/--shot ProtoNet episodes, none read from a file."""
    run = cfg.clone()
    run.FEW_SHOT.WAY, run.FEW_SHOT.SHOT, run.HEAD.NAME = options.way, options.shot, "ProtoNet"
    run.FEW_SHOT.TEST_EPISODES, run.FEW_SHOT.EPISODES_FILE = options.episodes, ""
    return run


def _from_store(head, dataset, episodes: List[Episode], cfg: CfgNode, store_dir: str) -> List[Optional[float]]:
    """Accuracies of `episodes` read from the store at `store_dir` (opened here, as a test run does)."""
    return run_episodes(None, head, dataset, episodes, cfg, store=FeatureStore(store_dir))


def _from_cache(backbone, head, dataset, episodes: List[Episode], cfg: CfgNode
                ) -> Tuple[float, List[Optional[float]]]:
    """(seconds without the extraction, accuracies) of `episodes` on the in-memory feature cache."""
    extraction: List[float] = []
    with time_calls(episode_runner, "build_feature_cache", extraction):
        seconds, accs = timed(run_episodes, backbone, head, dataset, episodes, cfg, device=device_for(cfg))
    return seconds - sum(extraction), accs


def _with_batch(cfg: CfgNode, episode_batch: int, cache: bool = True) -> CfgNode:
    run = cfg.clone()
    run.FEW_SHOT.EPISODE_BATCH, run.FEW_SHOT.USE_FEATURE_CACHE = episode_batch, cache
    return run


def store_test_process(cfg_file: str) -> None:
    """Run in a fresh process: print (json) the resident MiB after imports, the peak resident MiB and the
    episodes evaluated of the episodic test of the config at `cfg_file` (FEW_SHOT.FEATURE_STORE set)."""
    with open("/proc/self/status") as f:
        start = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    cfg = get_cfg()
    cfg.merge_from_file(cfg_file)
    summary = episodic_test(cfg, None)
    print(json.dumps({"start_mb": start, "peak_mb": summary["peak_rss_mb"], "episodes": summary["episodes"]}))


def store_test_memory(cfg: CfgNode, store_dir: str, work_dir: str) -> Dict:
    """`store_test_process` of `cfg` reading `store_dir` in a new Python process, its config and outputs
    in `work_dir`; the test checkpoint is pinned first, so that moving OUTPUT_DIR keeps the identity."""
    run = cfg.clone()
    path, _, kind = cu.find_test_checkpoint(cfg)
    if path is not None:
        run.TEST.CHECKPOINT_FILE_PATH = path
        run.TEST.CHECKPOINT_TYPE = kind or run.TEST.CHECKPOINT_TYPE
    run.FEW_SHOT.FEATURE_STORE, run.OUTPUT_DIR = store_dir, os.path.join(work_dir, "test")
    cfg_file = os.path.join(work_dir, "store_test.yaml")
    with open(cfg_file, "w") as f:
        f.write(run.dump())
    code = f"from {__name__} import store_test_process; store_test_process({cfg_file!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the episodic test from the store {store_dir} failed in its own process:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _evaluated(accs: List[Optional[float]]) -> List[float]:
    return [a for a in accs if a is not None]


def _acc(accs: List[Optional[float]]) -> str:
    done = _evaluated(accs)
    return f"{100 * sum(done) / len(done):.2f}" if done else "n/a"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "inf"


def bench_store(cfg: CfgNode, options: argparse.Namespace) -> str:
    """The report of the feature store's extraction cost and the episodic test's speed from it."""
    seed_everything(cfg.RNG_SEED)
    device = device_for(cfg)
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    model, checkpoint = build_test_model(cfg)
    backbone = du.unwrap(model).backbone.eval()
    identity = run_identity(cfg, dataset_source(cfg, len(dataset)))
    run = episode_cfg(cfg, options)
    episodes = episodes_for_cfg(run, pool_labels(run, dataset.labels, "test"))
    few = episodes[:options.uncached_episodes]
    head = build_head(run, in_dim=backbone.out_dim).to(device)
    default_batch = run.FEW_SHOT.EPISODE_BATCH
    with tempfile.TemporaryDirectory(prefix="store_bench_") as work_dir:
        forward_s, store_s, store_dir, clips = _time_extraction(backbone, dataset, cfg, identity, work_dir,
                                                                options.repeats)
        store_mib = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(store_dir)
                        for f in files) / 2 ** 20
        batched_s, batched = timed(_from_store, head, dataset, episodes, _with_batch(run, default_batch), store_dir)
        single_s, single = timed(_from_store, head, dataset, episodes, _with_batch(run, 1), store_dir)
        memory_s, in_memory = _from_cache(backbone, head, dataset, episodes, _with_batch(run, default_batch))
        uncached_s, uncached = timed(run_episodes, backbone, head, dataset, few, _with_batch(run, 1, cache=False),
                                     device=device)
        memory = store_test_memory(run, store_dir, work_dir)
    forward, extraction = statistics.median(forward_s), statistics.median(store_s)
    uncached_n = uncached_s / len(few) * len(episodes)

    def runs(seconds: List[float]) -> str:
        return ", ".join(f"{s:.2f}" for s in seconds)

    extraction_rows = [
        {"run": "forward, no writing", "clips": str(clips), "median s": f"{forward:.2f}",
         "clips/s": f"{clips / forward:.2f}", "runs (s)": runs(forward_s)},
        {"run": "store extraction", "clips": str(len(dataset)), "median s": f"{extraction:.2f}",
         "clips/s": f"{len(dataset) / extraction:.2f}", "runs (s)": runs(store_s)},
    ]
    episode_rows = [
        {"run": f"from the store, EPISODE_BATCH {default_batch}", "episodes": str(len(_evaluated(batched))),
         "seconds": f"{batched_s:.2f}", "episodes/s": f"{len(episodes) / batched_s:.1f}",
         "x forward": _ratio(batched_s, forward), "acc %": _acc(batched)},
        {"run": "from the store, EPISODE_BATCH 1", "episodes": str(len(_evaluated(single))),
         "seconds": f"{single_s:.2f}", "episodes/s": f"{len(episodes) / single_s:.1f}",
         "x forward": _ratio(single_s, forward), "acc %": _acc(single)},
        {"run": f"in-memory cache, EPISODE_BATCH {default_batch}", "episodes": str(len(_evaluated(in_memory))),
         "seconds": f"{memory_s:.2f}", "episodes/s": f"{len(episodes) / memory_s:.1f}",
         "x forward": _ratio(memory_s, forward), "acc %": _acc(in_memory)},
        {"run": "without cache (measured)", "episodes": str(len(_evaluated(uncached))), "seconds": f"{uncached_s:.2f}",
         "episodes/s": f"{len(few) / uncached_s:.2f}", "x forward": _ratio(uncached_s, forward),
         "acc %": _acc(uncached)},
        {"run": f"without cache (extrapolated to {len(episodes)})", "episodes": str(len(episodes)),
         "seconds": f"{uncached_n:.2f}", "episodes/s": f"{len(few) / uncached_s:.2f}",
         "x forward": _ratio(uncached_n, forward)},
    ]
    header = [
        f"feature store: {cfg.TEST.DATASET} {cfg.TEST.SPLIT} ({len(dataset)} clips, TEST.BATCH_SIZE "
        f"{cfg.TEST.BATCH_SIZE}, FEATURES.SHARD_SIZE {cfg.FEATURES.SHARD_SIZE}, DATA_LOADER.NUM_WORKERS "
        f"{cfg.DATA_LOADER.NUM_WORKERS}), {cfg.MODEL.MODEL_NAME} backbone "
        f"({'weights ' + checkpoint if checkpoint else 'random weights'})",
        device_line(cfg),
    ]
    lines = header + [
        "", f"extraction: medians of {options.repeats} interleaved runs each (after a one-batch warm-up); store "
            f"{store_mib:.1f} MiB on disk",
        format_table(extraction_rows, ("run", "clips", "median s", "clips/s", "runs (s)")), "",
        f"store extraction / forward: {_ratio(extraction, forward)} (goal <= {EXTRACTION_GOAL}x)", "",
        f"episodic test: {options.way}-way {options.shot}-shot {run.FEW_SHOT.QUERY}-query ProtoNet "
        f"(HEAD.METRIC {run.HEAD.METRIC}) episodes, one run each; the store runs include opening it, the "
        f"in-memory cache run excludes its extraction; "
        f"'x forward': seconds / the forward's median (one backbone pass over the clips)",
        format_table(episode_rows, ("run", "episodes", "seconds", "episodes/s", "x forward", "acc %")), "",
        f"{len(episodes)} episodes from the store / one backbone pass: {_ratio(batched_s, forward)} "
        f"(goal <= {STORE_GOAL}x); with the store extraction first: {_ratio(extraction + batched_s, forward)}",
        f"without cache (first {len(few)} episodes timed, {uncached_s / len(few):.3f} s/episode, extrapolated to "
        f"{len(episodes)}) / from the store: {_ratio(uncached_n, batched_s)} (goal >= {UNCACHED_GOAL:g}x)",
        f"EPISODE_BATCH 1 / EPISODE_BATCH {default_batch}: {_ratio(single_s, batched_s)}; from the store / in-memory "
        f"cache: {_ratio(batched_s, memory_s)}",
        f"peak RSS of the episodic test from the store in a fresh process ({memory['episodes']} episodes): "
        f"{memory['peak_mb']:.0f} MiB ({memory['start_mb']:.0f} MiB after imports)",
    ]
    return "\n".join(lines)
