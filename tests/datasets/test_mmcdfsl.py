"""MM-CDFSL's split files: every real file parsed, the exact frames MM-CDFSL reads, errors, and a loader
over stand-in frames rendered for the rows a test picks."""
import glob
import json
import os

import numpy as np
import pytest

from ego_fsar.config import get_cfg
from ego_fsar.config.merge import merge_file
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.epickitchens import AnnotationError
from ego_fsar.datasets.loader import construct_episode_loader, construct_loader
from ego_fsar.datasets.mmcdfsl import CDFSL_FORMATS, cdfsl_format, read_cdfsl_split
from tests.datasets.stand_ins import greys_of, grey, stand_in_cfg, write_frame
from tests.paths import REPO_ROOT, requires_shared, shared_path

CDFSL = shared_path("mm-cdfsl-splits")
needs_data = requires_shared("mm-cdfsl-splits")


def _read(split):
    _, fmt = cdfsl_format(split)
    return read_cdfsl_split(os.path.join(CDFSL, fmt.folder, f"{split}.json"), fmt)


def _records(split):
    _, fmt = cdfsl_format(split)
    with open(os.path.join(CDFSL, fmt.folder, f"{split}.json")) as f:
        return json.load(f)["clips"]


@needs_data
@pytest.mark.parametrize("split, clips, classes, first", [
    ("meccano_val", 7395, 40, ("MECCANO/RGB_frames/0001", 10, 9, "check_booklet")),
    ("wear_val", 8025, 15, ("WEAR/RGB_frames/sbj_0", 55, 0, "jogging")),
    ("ego4d_val", 1717, 51, ("ego4d_data/v1/image_frame/cc6c9a70-8bab-4694-b34f-bb1b96970d47", 2837, 0,
                             "pack plant")),
])
def test_labelled_pools_parse_completely(split, clips, classes, first):
    parsed, names = _read(split)
    assert len(parsed) == clips and len(names) == classes
    assert sorted({c.label for c in parsed}) == list(range(classes))
    c = parsed[0]
    assert (c.frames, c.start_frame, c.label, names[c.label]) == first


@needs_data
def test_class_ids_and_names_follow_mm_cdfsl():
    for split, key, name in (("meccano_val", "action_id_internal", "action_name"),
                             ("wear_val", "label_id_internal", "label")):
        parsed, names = _read(split)
        records = _records(split)
        assert [c.label for c in parsed] == [r[key] for r in records]
        assert all(names[r[key]] == r[name] for r in records)
    parsed, names = _read("ego4d_val")
    pairs = list(dict.fromkeys((r["verb_label"], r["noun_label"]) for r in _records("ego4d_val")))
    assert [c.label for c in parsed] == [pairs.index((r["verb_label"], r["noun_label"])) for r in _records("ego4d_val")]
    assert names[parsed[-1].label] == "take_(pick,_grab,_get) flower"


@needs_data
@pytest.mark.parametrize("split, clips, first", [
    ("meccano_unlabel", 1339, ("MECCANO/RGB_frames/0001", 5775)),
    ("wear_unlabel", 1767, ("WEAR/RGB_frames/sbj_0", 39040)),
    ("epic-55_unlabel", 3637, ("EPIC-KITCHENS-55/frames/rgb/train/P01/P01_01", 262)),
])
def test_unlabelled_clips_have_label_minus_one_and_no_class_names(split, clips, first):
    parsed, names = _read(split)
    assert len(parsed) == clips and names == [] and {c.label for c in parsed} == {-1}
    assert (parsed[0].frames, parsed[0].start_frame) == first


def _cfg(data_dir, prefix):
    return stand_in_cfg("MMCDFSL", data_dir, prefix)


def _render(root, split, clips, count, last=None):
    """Frame files of `clips` of a split (frames start + rate * i, i < count, 1-based), or frames
    1..last when `last` is given."""
    fmt = CDFSL_FORMATS[cdfsl_format(split)[0]]
    for c in clips:
        numbers = range(1, last + 1) if last else [max(1, c.start_frame + fmt.sampling_rate * i) for i in range(count)]
        for n in numbers:
            write_frame(os.path.join(root, c.frames, fmt.frame_template.format(n)), n)


@needs_data
@pytest.mark.parametrize("split", ["wear_val", "meccano_val", "ego4d_val"])
def test_first_clips_load_in_a_batch_with_the_exact_frames(tmp_path, split):
    clips, _ = _read(split)
    _render(str(tmp_path / "Data"), split, clips[:4], 4)
    cfg = _cfg(CDFSL, tmp_path / "Data")
    cfg.TEST.SPLIT = split
    ds = build_dataset("MMCDFSL", cfg, split)
    rate = CDFSL_FORMATS[ds.dataset].sampling_rate
    batch = next(iter(construct_loader(cfg, split)))
    assert batch["inputs"][0].shape == (4, 3, 4, 16, 16)
    assert batch["label"].tolist() == [c.label for c in clips[:4]]
    for i, c in enumerate(clips[:4]):
        expected = [grey(c.start_frame + rate * k) for k in range(4)]
        np.testing.assert_allclose(greys_of(ds.read_frames(i, 0)), expected, atol=3)


@needs_data
def test_frames_past_the_end_repeat_the_last_one(tmp_path):
    clips, _ = _read("meccano_val")
    first = clips[0]
    assert first.start_frame == 10
    _render(str(tmp_path / "Data"), "meccano_val", [first], 0, last=12)
    cfg = _cfg(CDFSL, tmp_path / "Data")
    cfg.DATA.NUM_FRAMES = 6
    ds = build_dataset("MMCDFSL", cfg, "meccano_val")
    np.testing.assert_allclose(greys_of(ds.read_frames(0, 0)), [grey(n) for n in (10, 11, 12, 12, 12, 12)], atol=3)


@needs_data
def test_unlabelled_target_clips_load_with_label_minus_one(tmp_path):
    clips, _ = _read("epic-55_unlabel")
    _render(str(tmp_path / "Data"), "epic-55_unlabel", clips[:4], 4)
    cfg = _cfg(CDFSL, tmp_path / "Data")
    ds = build_dataset("MMCDFSL", cfg, "epic-55_unlabel")
    assert ds.class_names == [] and len(ds) == 3637
    batch = next(iter(construct_loader(cfg, "epic-55_unlabel")))
    assert batch["label"].tolist() == [-1] * 4 and batch["meta"]["video_id"][0] == "P01_01"


def _write_split(root, split, clips, **extra):
    _, fmt = cdfsl_format(split)
    path = os.path.join(root, fmt.folder, f"{split}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict({"version": 1.0, "split": "val", "clips": clips}, **extra), f)
    return path


def test_meccano_style_episodes(tmp_path):
    clips = [{"video_id": "0001", "action_id": 10 + c, "action_name": f"act{c}", "start_frame": 1 + 20 * k,
              "end_frame": 5 + 20 * k, "action_id_internal": c} for c in range(3) for k in range(2)]
    _write_split(str(tmp_path / "cdfsl"), "meccano_val", clips, num_actions=3)
    ds_clips, _ = read_cdfsl_split(os.path.join(tmp_path, "cdfsl", CDFSL_FORMATS["meccano"].folder,
                                                "meccano_val.json"), CDFSL_FORMATS["meccano"])
    _render(str(tmp_path / "Data"), "meccano_val", ds_clips, 4)
    cfg = _cfg(tmp_path / "cdfsl", tmp_path / "Data")
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY = 2, 1, 1
    ds = build_dataset("MMCDFSL", cfg, "meccano_val")
    assert ds.class_names == ["act0", "act1", "act2"] and ds.labels == [0, 0, 1, 1, 2, 2]
    episode = next(iter(construct_episode_loader(cfg, "meccano_val", ds, num_episodes=1)))
    assert episode["query"][0].shape == (2, 3, 4, 16, 16) and episode["skipped"] == 0


def test_excluded_ego4d_videos_are_left_out_before_numbering_classes(tmp_path):
    bad = CDFSL_FORMATS["ego4d"].excluded_videos[0]
    record = {"uid": "u", "clip_uid": "c", "clip_frame": 40, "verb": "take", "noun": "cup"}
    clips = [dict(record, video_id=bad, verb_label=1, noun_label=1),
             dict(record, video_id="good", verb_label=2, noun_label=3),
             dict(record, video_id="good", verb_label=1, noun_label=1)]
    path = _write_split(str(tmp_path), "ego4d_train", clips)
    parsed, names = read_cdfsl_split(path, CDFSL_FORMATS["ego4d"])
    assert [c.label for c in parsed] == [0, 1] and names == ["take cup", "take cup"]


@pytest.mark.parametrize("clips, message", [
    ([{"video_id": "0001", "start_frame": 1, "action_id_internal": 0, "action_name": "a"},
      {"video_id": "0001", "start_frame": 5}], "clips[1]: missing label fields ['action_id_internal']"),
    ([{"video_id": "0001", "start_frame": "x", "action_id_internal": 0, "action_name": "a"}],
     "clips[0]: field 'start_frame' must be an integer, got 'x'"),
    ([{"start_frame": 3, "action_id_internal": 0, "action_name": "a"}], "clips[0]: missing field 'video_id'"),
    ([{"video_id": "1", "start_frame": 3, "action_id_internal": 0, "action_name": "a"},
      {"video_id": "1", "start_frame": 4, "action_id_internal": 0, "action_name": "b"}],
     "clips[1]: class 0 is named 'b' here but 'a' before"),
    ([], "expected an object with a non-empty 'clips' list"),
])
def test_malformed_records_name_file_and_clip(tmp_path, clips, message):
    path = _write_split(str(tmp_path), "meccano_val", clips)
    with pytest.raises(AnnotationError) as err:
        read_cdfsl_split(path, CDFSL_FORMATS["meccano"])
    assert path in str(err.value) and message in str(err.value)


def test_split_names_must_name_a_known_dataset(tmp_path):
    for split in ("val", "kinetics_val"):
        with pytest.raises(KeyError, match="must be `<dataset>_<part>` with dataset one of"):
            build_dataset("MMCDFSL", _cfg(tmp_path, tmp_path), split)
    with pytest.raises(FileNotFoundError, match="wear_train.json does not exist"):
        build_dataset("MMCDFSL", _cfg(tmp_path, tmp_path), "wear_train")


def _target_cfg(name):
    cfg = get_cfg()
    merge_file(cfg, os.path.join(REPO_ROOT, "configs", "MM-CDFSL", name))
    return cfg


@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(
    os.path.join(REPO_ROOT, "configs", "MM-CDFSL", "*.yaml")) if not p.endswith("_BASE.yaml")))
def test_configs_are_5_way_5_shot_from_ego4d(name):
    """Every stage trains on Ego4D source clips, except distillation, which trains on the target's
    unlabelled clips; every config tests 5-way 5-shot on the target its name gives."""
    cfg = _target_cfg(name)
    assert (cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY, cfg.FEW_SHOT.TEST_EPISODES) == (5, 5, 15, 600)
    target = cdfsl_format(cfg.TEST.SPLIT)[0]
    assert target.replace("-", "") in name.lower()
    assert cdfsl_format(cfg.DATA.TRAIN_SPLIT)[0] == (target if name.endswith("_DISTILL.yaml") else "ego4d")


@needs_data
@pytest.mark.parametrize("name", ["EGO4D_TO_MECCANO_SLOWFAST_PROTONET_5WAY_5SHOT.yaml",
                                  "EGO4D_TO_WEAR_SLOWFAST_PROTONET_5WAY_5SHOT.yaml"])  # EPIC-55's val is not shared
def test_configs_point_at_published_splits(name):
    cfg = _target_cfg(name)
    cfg.DATA.PATH_TO_DATA_DIR = CDFSL
    assert len(build_dataset(cfg.TEST.DATASET, cfg, cfg.TEST.SPLIT).class_names) > 5
