"""Backbone features of a dataset split, or of your own videos, into an on-disk feature store.

    python tools/extract_features.py [--videos DIR|LIST|VIDEO] [--out DIR] --cfg X.yaml [KEY VALUE ...]

(`--cfg` comes last: everything after its yaml files is a KEY VALUE override.)

Without --videos: every item of TEST.DATASET's TEST.SPLIT; with it, every video file (mp4, webm, avi, mkv,
...) and frame folder under DIR, the lines of a .txt LIST, or one VIDEO. The backbone (weights by the test
checkpoint precedence) runs on the config's sampling and test transform; its outputs (`pooled`, `frames`,
hidden levels) go to DIR (default FEW_SHOT.FEATURE_STORE, else OUTPUT_DIR/features) in shards of
FEATURES.SHARD_SIZE items, each written atomically, so a killed run continues where it stopped. With
NUM_GPUS / NUM_CPU_PROCS > 1 (or under torchrun) each process writes its own shards. An unreadable video
is listed in its shard's index.json as failed, with the reason. The episodic test reads a store with
FEW_SHOT.FEATURE_STORE DIR, without running the backbone.
"""
import argparse
import functools
from typing import List, Optional

from ego_fsar.datasets.video_folder import videos_from_arg
from ego_fsar.features.job import extract_job, store_dir_for
from ego_fsar.utils.launch import launch_job
from ego_fsar.utils.parser import load_config


def main(argv: Optional[List[str]] = None) -> str:
    """Run the extraction; returns the store's folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_files", nargs="+", required=True,
                        help="yaml config, optionally followed by KEY VALUE overrides (give it last)")
    parser.add_argument("--videos", default="", help="folder, .txt list or video to extract instead of the split")
    parser.add_argument("--out", default="", help="store folder (default FEW_SHOT.FEATURE_STORE or "
                                                  "OUTPUT_DIR/features)")
    parser.add_argument("--init_method", default=None, help="INIT_METHOD (default: the config's)")
    args = parser.parse_args(argv)
    files = [f for f in args.cfg_files if f.endswith((".yaml", ".yml"))]
    args.opts, args.cfg_files = args.cfg_files[len(files):], files
    cfg = load_config(args)
    videos = videos_from_arg(args.videos) if args.videos else []
    launch_job(cfg=cfg, func=functools.partial(extract_job, out=args.out, videos=videos))
    return store_dir_for(cfg, args.out)


if __name__ == "__main__":
    print(main())
