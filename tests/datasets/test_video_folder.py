"""A folder of your own clips as a dataset (`root/<class>/<video>`), and lists of videos: finding videos
(files and frame folders), labels, split files and their errors, decoding, bad videos, and
tools/run_net.py's episodic test and meta-training with configs/FewShot/FOLDER_5W5S.yaml on a tiny tree."""
import json
import os

import numpy as np
import pytest

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.utils import AnnotationError, DecodeError, SkippedItem
from ego_fsar.datasets.video_folder import VideoFiles, find_videos, open_any, videos_from_arg
from ego_fsar.utils.parser import load_config, parse_args
from tests.datasets.stand_ins import greys_of, grey, stand_in_cfg, write_frame, write_video
from tests.paths import REPO_ROOT
from tests.tools.tiny import load_tool

FOLDER_CFG = os.path.join(REPO_ROOT, "configs", "FewShot", "FOLDER_5W5S.yaml")
NUM_FRAMES = 8


def _touch(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()


def _frames(folder: str, first: int) -> None:
    """A frame folder of NUM_FRAMES frames numbered first, first + 1, ... (DATA.FRAME_TEMPLATE names)."""
    for i in range(NUM_FRAMES):
        write_frame(os.path.join(folder, f"frame_{i + 1:010d}.jpg"), first + i)


def _tree(root, classes=("bowling", "juggling", "skipping"), per_class: int = 3) -> str:
    """`per_class` videos per class: v0 a frame folder, v1.MP4 (upper-case extension), then WebMs v2, ...;
    video v of class c shows frames 100 * c + 10 * v + (0..7)."""
    for c, name in enumerate(classes):
        for v in range(per_class):
            first = 100 * c + 10 * v
            path = os.path.join(root, name, f"v{v}")
            if v == 0:
                _frames(path, first)
            elif v == 1:
                write_video(path + ".mp4", range(first, first + NUM_FRAMES))
                os.rename(path + ".mp4", path + ".MP4")
            else:
                write_video(path + ".webm", range(first, first + NUM_FRAMES))
    return str(root)


def _cfg(root, split_dir=""):
    cfg = stand_in_cfg("VideoFolder", split_dir, root)
    cfg.DATA.DECODING_BACKEND = "pyav"
    cfg.DATA.TEMPORAL_SAMPLING = "segment"
    return cfg


def test_find_videos_lists_files_and_frame_folders_sorted(tmp_path):
    for name in ["b/z.webm", "a/x.MKV", "a/deep/er/y.mp4", "a/clip.Avi", "a/notes.txt", "a/.hidden.mp4",
                 ".cache/w.mp4", "a/frames/frame_0000000001.jpg", "a/frames/inside.mp4", "c/shot/0001.PNG"]:
        _touch(str(tmp_path / name))
    assert find_videos(str(tmp_path)) == ["a/clip.Avi", "a/deep/er/y.mp4", "a/frames", "a/x.MKV", "b/z.webm",
                                          "c/shot"]
    assert find_videos(str(tmp_path / "a" / "deep")) == ["er/y.mp4"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_videos(str(tmp_path / "nowhere"))


def test_classes_labels_and_names(tmp_path):
    for name in ["walk/b.mp4", "walk/sub/a.webm", "run/r/frame_0000000001.jpg", "jump/j.mov", "README.md"]:
        _touch(str(tmp_path / name))
    dataset = build_dataset("VideoFolder", _cfg(tmp_path), "test")
    assert dataset.class_names == ["jump", "run", "walk"]
    assert dataset.names == ["jump/j.mov", "run/r", "walk/b.mp4", "walk/sub/a.webm"]
    assert dataset.labels == [0, 1, 2, 2]
    assert dataset.videos == [str(tmp_path / n) for n in dataset.names]
    assert len(dataset) == 4


@pytest.mark.parametrize("make, message", [
    ([], "has no class folders"),
    (["walk/a.mp4", "run/notes.txt"], r"class folder .*run holds no videos"),
    (["walk/a.mp4", "stray/frame_0000000001.jpg"], r"videos directly in DATA.PATH_PREFIX .* are in no class: .*stray/"),
    (["walk/a.mp4", "loose.mp4"], r"in no class: .*loose.mp4"),
])
def test_bad_trees_are_refused_naming_the_path(tmp_path, make, message):
    (tmp_path / "root").mkdir()
    for name in make:
        _touch(str(tmp_path / "root" / name))
    with pytest.raises(ValueError, match=message):
        build_dataset("VideoFolder", _cfg(tmp_path / "root"), "test")


def test_missing_root_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="DATA.PATH_PREFIX .*missing"):
        build_dataset("VideoFolder", _cfg(tmp_path / "missing"), "test")


def test_split_file_restricts_its_split_only(tmp_path):
    for name in ["walk/a.mp4", "walk/b.mp4", "run/r/frame_0000000001.jpg", "run/s.mp4"]:
        _touch(str(tmp_path / "root" / name))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("walk/b.mp4\n\nrun/r/\n")
    cfg = _cfg(tmp_path / "root", tmp_path / "splits")
    train = build_dataset("VideoFolder", cfg, "train")
    assert (train.names, train.labels) == (["run/r", "walk/b.mp4"], [0, 1])
    assert train.class_names == ["run", "walk"]  # labels index every class of the tree
    assert build_dataset("VideoFolder", cfg, "test").names == ["run/r", "run/s.mp4", "walk/a.mp4", "walk/b.mp4"]


def test_split_file_naming_a_missing_video_names_file_and_line(tmp_path):
    _touch(str(tmp_path / "root" / "walk" / "a.mp4"))
    (tmp_path / "test.txt").write_text("walk/a.mp4\nwalk/nope.mp4\n")
    with pytest.raises(AnnotationError, match=r"test.txt, line 2: no video 'walk/nope.mp4'"):
        build_dataset("VideoFolder", _cfg(tmp_path / "root", tmp_path), "test")


def test_items_decode_to_the_configured_shape_and_video(tmp_path):
    cfg = _cfg(_tree(tmp_path / "root", per_class=2))
    cfg.MODEL.ARCH, cfg.SLOWFAST.ALPHA = "slowfast", 2
    dataset = build_dataset("VideoFolder", cfg, "test")
    assert dataset.names[:2] == ["bowling/v0", "bowling/v1.MP4"]
    for clip in (0, 1, 5):  # a frame folder, an upper-case .MP4, an mp4 of another class
        item = dataset[clip]
        slow, fast = item["inputs"]
        assert tuple(fast.shape) == (3, 4, 16, 16) and tuple(slow.shape) == (3, 2, 16, 16)
        assert item["label"] == dataset.labels[clip] and item["meta"]["video"] == dataset.names[clip]
        label, v = divmod(clip, 2)
        first = 100 * label + 10 * v
        # segment sampling over the whole 8-frame video: one frame of each 2-frame segment, centred
        indices = dataset.frame_indices(clip, 0)
        greys = greys_of(dataset.read_rgb(clip, indices))
        assert np.abs(greys - [grey(first + i) for i in indices]).max() <= 3


def test_unreadable_video_is_skipped_by_the_retry_machinery(tmp_path):
    root = _tree(tmp_path / "root", classes=("a",), per_class=2)
    _touch(os.path.join(root, "a", "broken.mp4"))
    dataset = build_dataset("VideoFolder", _cfg(root), "test")
    assert dataset.names == ["a/broken.mp4", "a/v0", "a/v1.MP4"]
    item = dataset[0]
    assert isinstance(item, SkippedItem) and item.path == os.path.join(root, "a", "broken.mp4")
    assert dataset.failures.paths == [item.path]
    assert dataset[1]["label"] == 0


def test_frame_folder_not_named_by_the_template_names_it(tmp_path):
    write_frame(str(tmp_path / "shots" / "img_001.jpg"), 0)
    cfg = _cfg(tmp_path)
    with pytest.raises(DecodeError, match=r"shots: no first frame frame_0000000001.jpg.*DATA.FRAME_TEMPLATE"):
        open_any(str(tmp_path / "shots"), cfg)
    cfg.DATA.FRAME_TEMPLATE = "img_{:03d}.jpg"
    assert open_any(str(tmp_path / "shots"), cfg).num_frames == 1


def test_videos_from_arg(tmp_path):
    root = _tree(tmp_path / "root", classes=("a", "b"), per_class=2)
    everything = [os.path.join(root, n) for n in ["a/v0", "a/v1.MP4", "b/v0", "b/v1.MP4"]]
    assert videos_from_arg(root) == everything
    assert videos_from_arg(os.path.join(root, "a", "v0")) == [os.path.join(root, "a", "v0")]
    assert videos_from_arg(os.path.join(root, "b", "v1.MP4")) == [os.path.join(root, "b", "v1.MP4")]
    (tmp_path / "root" / "list.txt").write_text("b/v0\n\n" + os.path.join(root, "a", "v1.MP4") + "\n")
    assert videos_from_arg(str(tmp_path / "root" / "list.txt")) == [os.path.join(root, "b", "v0"),
                                                                    os.path.join(root, "a", "v1.MP4")]
    (tmp_path / "bad.txt").write_text("root/a/v0\nroot/a/gone.mp4\n")
    with pytest.raises(FileNotFoundError, match=r"bad.txt, line 2: .*gone.mp4"):
        videos_from_arg(str(tmp_path / "bad.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty holds no videos"):
        videos_from_arg(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        videos_from_arg(str(tmp_path / "missing.mp4"))


def test_video_files_are_unlabelled_test_views(tmp_path):
    root = _tree(tmp_path / "root", classes=("a",), per_class=2)
    cfg = _cfg(root)
    cfg.TEST.NUM_SPATIAL_CROPS = 3
    paths = [os.path.join(root, "a", "v1.MP4"), os.path.join(root, "a", "v0")]
    dataset = VideoFiles(cfg, paths)
    assert dataset.split == cfg.TEST.SPLIT and len(dataset) == 6
    assert dataset.names == paths and dataset.labels == [-1, -1] and dataset.class_names == []
    item = dataset[4]
    assert item["label"] == -1 and item["meta"]["video"] == paths[1] and item["meta"]["spatial_index"] == 1
    assert tuple(item["inputs"][0].shape) == (3, 4, 16, 16)
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFiles(cfg, [os.path.join(root, "nope.mp4")])


def test_folder_config_is_a_5way_5shot_episodic_test_on_a_folder():
    cfg = load_config(parse_args(["--cfg", FOLDER_CFG, "DATA.PATH_PREFIX", "my_clips/"]), FOLDER_CFG)
    assert (cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.DATA.PATH_PREFIX) == (5, 5, "my_clips/")
    assert (cfg.TRAIN.DATASET, cfg.TEST.DATASET) == ("VideoFolder", "VideoFolder")
    assert (cfg.TRAIN.PROTOCOL, cfg.TEST.PROTOCOL, cfg.TRAIN.ENABLE, cfg.NUM_GPUS) == ("episodic", "episodic", False, 0)
    assert (cfg.MODEL.MODEL_NAME, cfg.DATA.PATH_TO_DATA_DIR) == ("FewShot", "")


def _run_net(root, out_dir, *overrides):
    """tools/run_net.py with FOLDER_5W5S.yaml on tree `root`, shrunk to 2-way 1-shot 1-query 32 px."""
    load_tool("run_net").main([
        "--cfg", FOLDER_CFG, "DATA.PATH_PREFIX", root, "OUTPUT_DIR", str(out_dir), "NUM_GPUS", "0",
        "DATA_LOADER.NUM_WORKERS", "0", "LOG_MODEL_INFO", "False", "RESNET.WIDTH_PER_GROUP", "4",
        "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
        "FEW_SHOT.WAY", "2", "FEW_SHOT.SHOT", "1", "FEW_SHOT.QUERY", "1", "FEW_SHOT.TEST_EPISODES", "4",
        *overrides])
    with open(os.path.join(out_dir, "json_stats.log")) as f:
        return [json.loads(line) for line in f]


def test_run_net_episodic_test_on_a_folder(tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    root = _tree(tmp_path / "clips")
    stats = _run_net(root, tmp_path / "out")
    (record,) = [r for r in stats if r["_type"] == "fewshot_test"]
    assert record["episodes"] == 4 and 0 <= record["acc"] <= 100


def test_run_net_meta_trains_on_a_folder_with_split_files(tmp_path, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    root = _tree(tmp_path / "clips", classes=("a", "b", "c", "d"), per_class=2)
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.txt").write_text("a/v0\na/v1.MP4\nb/v0\nb/v1.MP4\n")
    for split in ("val", "test"):
        (splits / f"{split}.txt").write_text("c/v0\nc/v1.MP4\nd/v0\nd/v1.MP4\n")
    stats = _run_net(root, tmp_path / "out", "TRAIN.ENABLE", "True", "DATA.PATH_TO_DATA_DIR", str(splits),
                     "SOLVER.MAX_EPOCH", "1", "FEW_SHOT.TRAIN_EPISODES", "2", "FEW_SHOT.VAL_EPISODES", "1",
                     "LOG_PERIOD", "1")
    assert sum(r["_type"] == "train_iter" for r in stats) == 2
    (val,) = [r for r in stats if r["_type"] == "val_epoch"]
    assert val["samples"] == 2  # one 2-way episode, one query per class, of the val split's classes
    assert os.path.isfile(tmp_path / "out" / "checkpoints" / "checkpoint_epoch_00001.pyth")
    assert [r["episodes"] for r in stats if r["_type"] == "fewshot_test"] == [4]
