"""`fewshot`: episodes/s of the episodic test on TEST.DATASET / TEST.SPLIT through the engine's own
`run_episodes`, with the feature cache (one backbone pass per clip, then every episode; the extraction is
counted in and also shown on its own) and without it (the backbone runs on every episode's clips). With
TEST.NUM_MASKED_VIEWS V > 0 (MM-CDFSL's masked inference) also masked against unmasked inference: seconds
and peak memory per episode without the cache (each mode in a process of its own: accelerator memory on
CUDA, resident memory on the CPU), and the accuracy of both on the same episodes."""
import argparse
import multiprocessing as mp
from typing import List, Tuple

import numpy as np
from fvcore.common.config import CfgNode

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.episodes import episodes_for_cfg
from ego_fsar.engine import episode_runner
from ego_fsar.engine.episode_runner import run_episodes
from ego_fsar.engine.episodic_validation import pool_labels
from ego_fsar.engine.tester import build_fewshot_parts
from ego_fsar.utils.env import device_for, seed_everything
from ego_fsar.utils.parser import positive_int

from .report import device_line, format_table
from .timing import peak_memory, rate, time_calls, timed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `bench_fewshot`."""
    parser.add_argument("--episodes", type=positive_int, default=None,
                        help="episodes run with the feature cache (default FEW_SHOT.TEST_EPISODES)")
    parser.add_argument("--uncached-episodes", type=positive_int, default=20,
                        help="episodes (the first ones) run without the cache")


def _test_parts(cfg: CfgNode):
    """(dataset, backbone, few-shot head, checkpoint path or None) as the episodic test builds them, after
    seeding with RNG_SEED (the same random weights in every process); a head that no checkpoint trained is
    timed too (with the test's warning): speed does not depend on weights."""
    seed_everything(cfg.RNG_SEED)
    dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
    untrained_ok = cfg.clone()
    untrained_ok.TEST.ALLOW_UNTRAINED_HEAD = True
    return (dataset, *build_fewshot_parts(untrained_ok))


def bench_fewshot(cfg: CfgNode, options: argparse.Namespace) -> str:
    """The report of the episodic test's speed with and without the feature cache."""
    device = device_for(cfg)
    dataset, backbone, head, checkpoint = _test_parts(cfg)
    episodes = episodes_for_cfg(cfg, pool_labels(cfg, dataset.labels, "test"), options.episodes)
    cached_cfg, uncached_cfg = cfg.clone(), cfg.clone()
    cached_cfg.FEW_SHOT.USE_FEATURE_CACHE, uncached_cfg.FEW_SHOT.USE_FEATURE_CACHE = True, False

    extraction: List[float] = []
    with time_calls(episode_runner, "build_feature_cache", extraction):
        cached_s, _ = timed(run_episodes, backbone, head, dataset, episodes, cached_cfg, device=device)
    if len(extraction) != 1:
        raise RuntimeError(f"run_episodes called episode_runner.build_feature_cache {len(extraction)} times "
                           f"(expected once): update the extraction timing of {__name__}")
    few = episodes[:options.uncached_episodes]
    uncached_s, _ = timed(run_episodes, backbone, head, dataset, few, uncached_cfg, device=device)

    cached_clips = len({i for ep in episodes for i in (*ep.support, *ep.query)})
    uncached_clips = sum(len(ep.support) + len(ep.query) for ep in few)
    episodes_s = cached_s - sum(extraction)
    rows = [
        {"mode": "with cache", "episodes": str(len(episodes)), "backbone clips": str(cached_clips),
         "seconds": f"{cached_s:.2f}", "episodes/s": rate(len(episodes), cached_s)},
        {"mode": "  extraction", "backbone clips": str(cached_clips), "seconds": f"{sum(extraction):.2f}"},
        {"mode": "  episodes", "episodes": str(len(episodes)), "backbone clips": "0", "seconds": f"{episodes_s:.2f}",
         "episodes/s": rate(len(episodes), episodes_s)},
        {"mode": "without cache", "episodes": str(len(few)), "backbone clips": str(uncached_clips),
         "seconds": f"{uncached_s:.2f}", "episodes/s": rate(len(few), uncached_s)},
    ]
    speedup = (len(episodes) / cached_s) / (len(few) / uncached_s)
    header = [
        f"few-shot test: {cfg.TEST.DATASET} {cfg.TEST.SPLIT} ({len(dataset.labels)} clips), {cfg.FEW_SHOT.WAY}-way "
        f"{cfg.FEW_SHOT.SHOT}-shot {cfg.FEW_SHOT.QUERY}-query, {type(head).__name__} head on {cfg.MODEL.MODEL_NAME} "
        f"({'weights ' + checkpoint if checkpoint else 'random weights'})",
        device_line(cfg),
    ]
    columns = ("mode", "episodes", "backbone clips", "seconds", "episodes/s")
    lines = header + [format_table(rows, columns), "",
                      f"speed-up with the cache: {speedup:.1f}x episodes/s (extraction included)"]
    if cfg.TEST.NUM_MASKED_VIEWS > 0:
        lines += ["", _masked_comparison(cfg, backbone, head, dataset, episodes, few)]
    return "\n".join(lines)


def _uncached_cost(cfg: CfgNode, few, views: int) -> Tuple[float, Tuple[str, str]]:
    """Seconds and peak memory (`peak_memory`'s pair) of the episodes `few` run without the feature cache
    and with `views` masked query views (0: unmasked), on the test's model and dataset built here."""
    device = device_for(cfg)
    dataset, backbone, head, _ = _test_parts(cfg)
    run_cfg = cfg.clone()
    run_cfg.TEST.NUM_MASKED_VIEWS, run_cfg.FEW_SHOT.USE_FEATURE_CACHE = views, False
    peak = peak_memory(device)
    seconds, _ = timed(run_episodes, backbone, head, dataset, few, run_cfg, device=device)
    return seconds, peak()


def _masked_comparison(cfg: CfgNode, backbone, head, dataset, episodes, few) -> str:
    """Masked (TEST.NUM_MASKED_VIEWS query views of MASK.RATIO) vs unmasked inference: per-episode seconds
    and peak memory without the feature cache on `few`, each mode in a fresh process (so that neither
    inherits the other's allocations), and accuracy with the cache on every episode of `episodes`."""
    rows = []
    for views in (cfg.TEST.NUM_MASKED_VIEWS, 0):
        with mp.get_context("spawn").Pool(1) as pool:
            seconds, (peak, above_start) = pool.apply(_uncached_cost, (cfg, few, views))
            pool.close()  # the worker exits on its own instead of being terminated by the with-block
            pool.join()
        run_cfg = cfg.clone()
        run_cfg.TEST.NUM_MASKED_VIEWS, run_cfg.FEW_SHOT.USE_FEATURE_CACHE = views, True
        accs = np.asarray([a for a in run_episodes(backbone, head, dataset, episodes, run_cfg) if a is not None]) * 100
        mode = f"masked {cfg.MASK.RATIO:g}, {views} query views" if views else "unmasked"
        rows.append({"inference": mode, "s/episode": f"{seconds / len(few):.3f}", "peak MiB": peak,
                     "peak above start MiB": above_start,
                     "acc %": f"{accs.mean():.2f} ± {1.96 * accs.std() / np.sqrt(len(accs)):.2f}",
                     "episodes (acc)": str(len(accs)), "_s": seconds})
    speedup = rows[1].pop("_s") / rows[0].pop("_s")
    memory = "accelerator memory" if device_for(cfg).type == "cuda" else "resident memory of the process"
    title = (f"masked vs unmasked inference (time and peak {memory}: the first {len(few)} episodes without the "
             f"cache, each mode in its own process; accuracy: the same {len(episodes)} episodes for both)")
    table = format_table(rows, ("inference", "s/episode", "peak MiB", "peak above start MiB", "acc %",
                                "episodes (acc)"))
    return "\n".join([title, table, "", f"unmasked / masked seconds per episode: {speedup:.2f}x"])
