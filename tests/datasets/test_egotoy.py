"""EgoToy: deterministic generation, EPIC layout and columns, class structure, dataset items."""
import csv
import hashlib
import json
import os

import numpy as np
import pytest

from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.decoder import open_video
from ego_fsar.datasets.egotoy_render import (KEYPOINTS, PRIMITIVES, SOURCE, TARGET, Renderer, class_name, class_pairs,
                                             split_specs)
from ego_fsar.datasets.egotoy_writer import FLOW_BOUND, make_egotoy
from ego_fsar.datasets.epickitchens import EPIC_COLUMNS

from tests.egotoy import TINY, frame_path


def _digests(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = hashlib.md5(open(path, "rb").read()).hexdigest()
    return out


def _rows(root, split):
    with open(os.path.join(root, "annotations", f"EgoToy_{split}.csv"), newline="") as f:
        return list(csv.reader(f))


def test_same_seed_same_files(egotoy_root, tmp_path):
    make_egotoy(str(tmp_path / "again"), seed=0, **TINY)
    make_egotoy(str(tmp_path / "other"), seed=1, **TINY)
    first, again, other = _digests(egotoy_root), _digests(tmp_path / "again"), _digests(tmp_path / "other")
    assert first == again
    assert any(p.endswith(".MP4") for p in first) and any(p.endswith(".jpg") for p in first)
    assert first.keys() == other.keys() and first != other


def test_repeated_writes_are_byte_identical(tmp_path):
    """Six writes of the same seed in one process give the same bytes (with x264's default macroblock-tree
    rate control, one or two of the seven MP4s differed in 4 of 5 runs of this test)."""
    tiny = dict(TINY, write_flow=False, write_pose=False)
    digests = []
    for i in range(6):
        make_egotoy(str(tmp_path / str(i)), seed=0, **tiny)
        digests.append(_digests(tmp_path / str(i)))
    assert sum(p.endswith(".MP4") for p in digests[0]) == 7
    assert all(d == digests[0] for d in digests[1:])


def test_refuses_to_overwrite(egotoy_root):
    with pytest.raises(FileExistsError, match="not empty"):
        make_egotoy(egotoy_root, seed=0, **TINY)


def test_epic_layout_and_columns(egotoy_root):
    for split, per_class, classes in (("train", 4, 4), ("val", 2, 4), ("test", 6, 4), ("fewshot_val", 3, 2)):
        header, *rows = _rows(egotoy_root, split)
        assert tuple(header) == EPIC_COLUMNS
        assert len(rows) == per_class * classes
        for row in rows:
            r = dict(zip(header, row))
            start, stop = int(r["start_frame"]), int(r["stop_frame"])
            assert stop - start + 1 == TINY["num_frames"]
            assert os.path.isfile(frame_path(egotoy_root, r["participant_id"], r["video_id"], stop))
            assert r["verb"] == class_name(class_pairs(2, 2, 1)[int(r["verb_class"])])
            assert r["narration"] == "move " + r["verb"].replace("-then-", " then ")
            assert r["all_noun_classes"] == f"[{r['noun_class']}]"
            domain = SOURCE if split in ("train", "val") else TARGET
            assert int(r["noun_class"]) in domain.digits and r["participant_id"] in domain.participants
    assert os.path.isfile(os.path.join(egotoy_root, "P01", "videos", "P01_01.MP4"))
    assert _rows(egotoy_root, "train")[1][3:6] == ["00:00:00.000", "00:00:00.00", "00:00:00.23"]


def test_full_size_class_structure():
    pairs = class_pairs()
    specs = {s.name: s for s in split_specs()}
    source, test, fs_val = (set(specs[n].class_ids) for n in ("train", "test", "fewshot_val"))
    assert len(pairs) == len(set(pairs)) == 42 and all(a != b for a, b in pairs)
    assert (len(source), len(test), len(fs_val)) == (24, 12, 6)
    assert not (source & test or source & fs_val or test & fs_val)
    assert set(specs["val"].class_ids) == source
    for ids in (source, test, fs_val):  # each split holds both orders of its pairs
        assert {pairs[i][::-1] for i in ids} == {pairs[i] for i in ids}
    assert not {frozenset(pairs[i]) for i in test} & {frozenset(pairs[i]) for i in source}
    assert specs["test"].clips_per_class >= 20 and specs["fewshot_val"].clips_per_class >= 20
    assert {p for pair in pairs for p in pair} == set(range(len(PRIMITIVES)))


def test_dataset_items(cfg):
    train = build_dataset("EgoToy", cfg, "train")
    assert train.num_clips == len(train) == 16 and sorted(set(train.labels)) == [0, 1, 2, 3]
    item = train[5]
    assert item["inputs"][0].shape == (3, 4, 24, 24) and item["label"] == train.labels[5]
    assert train.class_names[item["label"]] == item["meta"]["narration"][5:].replace(" then ", "-then-")
    test = build_dataset("EgoToy", cfg, "test")
    assert sorted(set(test.labels)) == [4, 5, 6, 7] and len(test) == 24
    assert test[0]["inputs"][0].shape == (3, 4, 32, 32)
    fs_val = build_dataset("EgoToy", cfg, "fewshot_val")
    assert sorted(set(fs_val.labels)) == [8, 9]


def test_slowfast_pathways(cfg):
    cfg.MODEL.ARCH, cfg.SLOWFAST.ALPHA = "slowfast", 2
    slow, fast = build_dataset("EgoToy", cfg, "val")[0]["inputs"]
    assert slow.shape == (3, 2, 32, 32) and fast.shape == (3, 4, 32, 32)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_videos_hold_the_same_frames(cfg, egotoy_root, backend):
    jpgs = open_video(cfg, os.path.join(egotoy_root, "P01", "rgb_frames", "P01_01"))
    cfg.DATA.DECODING_BACKEND = backend
    mp4 = open_video(cfg, os.path.join(egotoy_root, "P01", "videos", "P01_01.MP4"))
    assert mp4.num_frames == jpgs.num_frames == 8 * TINY["num_frames"]
    a = jpgs.read(range(mp4.num_frames)).astype(np.int16)
    b = mp4.read(range(mp4.num_frames)).astype(np.int16)
    same, shifted = np.abs(a - b).mean(), np.abs(a[1:] - b[:-1]).mean()
    assert same < 8 and same < 0.6 * shifted  # JPEG vs H.264 of 32 px frames, aligned in time
    video_ds = build_dataset("EgoToy", cfg.clone(), "val")
    cfg.DATA.DECODING_BACKEND = "frames"
    frames_ds = build_dataset("EgoToy", cfg, "val")
    assert (frames_ds[3]["inputs"][0] - video_ds[3]["inputs"][0]).abs().mean() < 0.2


def test_flips_are_refused_at_training(cfg):
    cfg.DATA.RANDOM_FLIP = True
    with pytest.raises(ValueError, match="RANDOM_FLIP False"):
        build_dataset("egotoy", cfg, "train")
    assert len(build_dataset("egotoy", cfg, "test")) == 24


def test_missing_data_says_how_to_make_it(cfg, tmp_path):
    cfg.DATA.PATH_PREFIX = str(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="tools/make_egotoy.py --out"):
        build_dataset("egotoy", cfg, "train")


def _warp_errors(render, t, pixels):
    """Mean |frame t - frame t+1 sampled at p + flow(p)| and |frame t - frame t+1| over `pixels` [S,S]."""
    size = render.frames.shape[1]
    ys, xs = np.mgrid[0:size, 0:size]
    flow = render.flow()[t]
    x = np.clip(np.round(xs + flow[..., 0]).astype(int), 0, size - 1)
    y = np.clip(np.round(ys + flow[..., 1]).astype(int), 0, size - 1)
    a, b = render.frames[t].astype(int), render.frames[t + 1].astype(int)
    return np.abs(a - b[y, x])[pixels].mean(), np.abs(a - b)[pixels].mean()


@pytest.mark.parametrize("domain, where", [(TARGET, "everywhere"), (SOURCE, "glyph")])
def test_flow_and_keypoints_follow_the_glyph_and_camera(cfg, egotoy_root, domain, where):
    render = Renderer(32, 8).render(class_pairs(2, 2, 1)[6], domain, np.random.default_rng(0))
    flow, points = render.flow(), render.keypoints()
    assert flow.shape == (8, 32, 32, 2) and points.shape == (8, len(KEYPOINTS), 2)
    np.testing.assert_allclose(points[:, 0], render.centre)
    assert not flow[-1].any()
    # frame t + 1 sampled along the flow matches frame t far better than frame t + 1 itself: the
    # camera's shake (target domain) and the glyph's own motion (source domain, little shake)
    errors = np.array([_warp_errors(render, t, render.alpha[t] > 0.5 if where == "glyph" else np.s_[:])
                       for t in range(7)]).mean(0)
    assert errors[0] < 0.3 * errors[1]


def test_flow_frames_and_keypoint_files(cfg, egotoy_root):
    u = open_video(cfg, os.path.join(egotoy_root, "P01", "flow_frames", "P01_01", "u")).read([0, 7])
    assert u.shape == (2, 32, 32, 3) and np.abs(u[1].astype(int) - 128).max() <= 2  # last frame of a clip: 0
    assert np.abs((u[0, ..., 0].astype(float) - 128) * FLOW_BOUND / 127.5).max() < FLOW_BOUND
    pose = json.load(open(os.path.join(egotoy_root, "P01", "pose", "P01_01.json")))
    assert pose["keypoints"] == list(KEYPOINTS) and np.array(pose["frames"]).shape == (64, 5, 2)
