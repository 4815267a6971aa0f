"""The feature-extraction job of tools/extract_features.py, run on every process by `launch_job`."""
import os
import time
from typing import Sequence

from fvcore.common.config import CfgNode

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.video_folder import VideoFiles
from ego_fsar.engine.tester import build_test_model
from ego_fsar.utils import distributed as du
from ego_fsar.utils.env import seed_everything
from ego_fsar.utils.logging import get_logger, log_json_stats, setup_logging
from ego_fsar.utils.tensorboard import TensorboardWriter

from .extract import extract_store
from .identity import dataset_source, run_identity, videos_source
from .store import FeatureStore

logger = get_logger(__name__)


def store_dir_for(cfg: CfgNode, out: str = "") -> str:
    """Where to write: `out`, else FEW_SHOT.FEATURE_STORE, else OUTPUT_DIR/features."""
    return out or cfg.FEW_SHOT.FEATURE_STORE or os.path.join(cfg.OUTPUT_DIR, "features")


def extract_job(cfg: CfgNode, out: str = "", videos: Sequence[str] = ()) -> None:
    """Extract the backbone outputs (test checkpoint's weights, test transform) of every item of
    TEST.DATASET's TEST.SPLIT, or of the video files / frame folders `videos`, into the store at
    `store_dir_for(cfg, out)`; resumes an interrupted store of the same identity. Logs a json_stats record
    (`_type` feature_extraction: items, readable, failed, shards_written, seconds), also to TensorBoard
    as `Features/<field>`."""
    seed_everything(cfg.RNG_SEED)
    setup_logging(cfg.OUTPUT_DIR)
    if videos:
        dataset = VideoFiles(cfg, list(videos))
        source = videos_source(videos, len(dataset))
    else:
        dataset = build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT)
        source = dataset_source(cfg, len(dataset))
    identity = run_identity(cfg, source)
    store_dir = store_dir_for(cfg, out)
    backbone = du.unwrap(build_test_model(cfg)[0]).backbone
    start = time.perf_counter()
    written = sum(du.all_gather_object(len(extract_store(backbone, dataset, cfg, store_dir, identity))))
    if du.is_master_proc():
        store = FeatureStore(store_dir)
        stats = {"_type": "feature_extraction", "items": len(dataset), "readable": len(store.rows),
                 "failed": len(store.failed), "shards_written": written, "seconds": time.perf_counter() - start}
        log_json_stats(stats)
        with TensorboardWriter(cfg) as writer:
            writer.add_scalars({f"Features/{key}": value for key, value in stats.items()})
        logger.info("Feature store %s: %d items, %d readable, %d failed (this run wrote %d shards)",
                    store_dir, len(dataset), len(store.rows), len(store.failed), written)
        for failure in store.failed:
            logger.warning("failed item %d (%s): %s", failure["item"], failure["path"], failure["reason"])
