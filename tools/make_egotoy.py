"""Write EgoToy, the built-in demo data set (EPIC-Kitchens-100 layout), e.g.

    python tools/make_egotoy.py --out data/egotoy --seed 0
    python tools/make_egotoy.py --egoclip --out data/egotoy_egoclip --seed 0   (EgoVLP's EgoClip/EgoMCQ formats)

`--exo` also writes the exo (third-person) twin of the training clips under <out>/exo (SUM-L, Ego-Exo).
"""
import argparse
import time

from ego_fsar.datasets.egotoy_writer import make_egotoy
from ego_fsar.datasets.egotoy_egoclip import make_egotoy_egoclip
from ego_fsar.datasets.egotoy_unlabelled import UNLABELLED_SPLIT, write_unlabelled_pool
from ego_fsar.datasets.egotoy_exo import make_egotoy_exo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/egotoy", help="root folder to write")
    parser.add_argument("--seed", type=int, default=0, help="everything written is a function of the seed")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--num-frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--clips", type=int, nargs=4, default=(30, 8, 24, 20),
                        metavar=("TRAIN", "VAL", "TEST", "FS_VAL"),
                        help="clips per class of the train, val, test and fewshot_val splits")
    parser.add_argument("--no-videos", action="store_true", help="write frame folders only, no MP4 videos")
    parser.add_argument("--flow", action="store_true", help="also write exact optical flow frames (u, v)")
    parser.add_argument("--pose", action="store_true", help="also write glyph keypoints per frame")
    parser.add_argument("--exo", action="store_true", help="also write the exo twin of the training clips (<out>/exo)")
    parser.add_argument("--unlabelled", type=int, default=0, metavar="CLIPS",
                        help="also write an unlabelled target pool of CLIPS clips per target class (split "
                             "'unlabelled', MM-CDFSL); 0: none")
    parser.add_argument("--overwrite", action="store_true", help="delete --out first if it is not empty")
    parser.add_argument("--egoclip", action="store_true",
                        help="write EgoToy narrations as an EgoClip TSV over mp4 chunks and an EgoMCQ JSON (EgoVLP) "
                             "from the train and val clips per class of --clips, instead of the EPIC layout")
    args = parser.parse_args()
    tic = time.time()
    if args.egoclip and (args.exo or args.unlabelled):
        parser.error("--egoclip writes its own folder: run --exo / --unlabelled separately")
    if args.egoclip:
        counts = make_egotoy_egoclip(args.out, seed=args.seed, size=args.size, num_frames=args.num_frames,
                                     clips=tuple(args.clips[:2]), overwrite=args.overwrite)
    else:
        counts = make_egotoy(args.out, seed=args.seed, size=args.size, num_frames=args.num_frames,
                             clips=tuple(args.clips), write_videos=not args.no_videos, write_flow=args.flow,
                             write_pose=args.pose, overwrite=args.overwrite)
    if args.unlabelled:
        counts[UNLABELLED_SPLIT] = write_unlabelled_pool(
            args.out, seed=args.seed, size=args.size, num_frames=args.num_frames, clips=tuple(args.clips),
            clips_per_class=args.unlabelled, write_videos=not args.no_videos, write_flow=args.flow,
            write_pose=args.pose)
    if args.exo:
        counts["exo train"] = make_egotoy_exo(args.out, seed=args.seed, size=args.size, num_frames=args.num_frames)
    summary = ", ".join(f"{split} {n}" for split, n in counts.items())
    print(f"EgoToy written to {args.out} in {time.time() - tic:.1f}s: clips {summary}")


if __name__ == "__main__":
    main()
