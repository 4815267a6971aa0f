"""Modalities: one crop for every modality of a clip, mirrored flow, items with `modalities`, EgoToy's flow
and keypoints and MM-CDFSL's .npy flow and heatmaps end to end, and the flow-only SlowFast config."""
import json
import os

import numpy as np
import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.datasets import build_dataset
from ego_fsar.datasets.loader import construct_episode_loader, construct_loader
from ego_fsar.datasets.mmcdfsl import CDFSL_FORMATS
from ego_fsar.datasets.modalities import check_modalities, transform_modalities
from ego_fsar.datasets.pose import Heatmaps, Keypoints
from ego_fsar.datasets.transform import sample_spatial_params
from ego_fsar.models import build_model
from ego_fsar.utils.parser import load_config, parse_args
from tests.datasets.stand_ins import write_frame
from tests.paths import REPO_ROOT

# A 40 x 48 (H x W) scene with a 4 x 4 square centred at x = 26, y = 20: inside every crop below.
SQUARE = (slice(18, 22), slice(24, 28))


def _cfg():
    cfg = get_cfg()
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [32, 36], 32, 32
    cfg.DATA.MEAN, cfg.DATA.STD = [0.0] * 3, [1.0] * 3
    cfg.DATA.FLOW_MEAN, cfg.DATA.FLOW_STD = [0.0, 0.0], [1.0, 1.0]
    cfg.DATA.POSE_MEAN, cfg.DATA.POSE_STD, cfg.DATA.POSE_SIZE, cfg.DATA.POSE_SIGMA = 0.0, 1.0, 16, 1.0
    return cfg


def _scene(scale=1):
    """(RGB uint8 [2,40,48,3] with the white square, its indicator [2,40/scale,48/scale] float)."""
    rgb = np.zeros((2, 40, 48, 3), np.uint8)
    rgb[:, SQUARE[0], SQUARE[1]] = 255
    mask = rgb[:, ::scale, ::scale, 0].astype(np.float32) / 255
    return rgb, mask


def _centroid(image: torch.Tensor) -> np.ndarray:
    """(x, y) centre of mass of [H,W] as fractions of the width and height."""
    h, w = image.shape
    image = image.clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return np.array([(image * xs).sum() / image.sum() / w, (image * ys).sum() / image.sum() / h])


@pytest.mark.parametrize("pose_kind", ["keypoints", "heatmaps"])
@pytest.mark.parametrize("spatial_idx", [-1, 0, 1, 2])
def test_one_crop_box_for_every_modality(pose_kind, spatial_idx):
    """Flow and heatmaps at half the RGB resolution, keypoints in RGB pixels: after the shared scale,
    crop and flip, the square sits at the same place in every modality, and mirrored flow has -x."""
    cfg = _cfg()
    rgb, half = _scene(scale=2)
    flow = np.stack([np.ones_like(half), half], axis=-1)  # x = 1 everywhere, the square in y
    pose = (Keypoints(np.array([[[26.0, 20.0]]] * 2, np.float32), (40, 48)) if pose_kind == "keypoints"
            else Heatmaps(half[..., None]))
    flips = set()
    for seed in range(6):
        out = transform_modalities(cfg, {"rgb": rgb, "flow": flow, "pose": pose}, spatial_idx,
                                   np.random.RandomState(seed))
        params = sample_spatial_params(cfg, 40, 48, spatial_idx, np.random.RandomState(seed))
        flips.add(params.flip)
        assert out["rgb"].shape == (3, 2, 32, 32) and out["flow"].shape == (2, 2, 32, 32)
        assert out["pose"].shape == (1, 2, 16, 16)
        where = _centroid(out["rgb"][0, 0])
        np.testing.assert_allclose(_centroid(out["flow"][1, 0]), where, atol=0.02)
        np.testing.assert_allclose(_centroid(out["pose"][0, 1]), where, atol=0.03)
        torch.testing.assert_close(out["flow"][0], torch.full((2, 32, 32), -1.0 if params.flip else 1.0))
        if not params.flip:  # the square's centre, mapped through the drawn crop box
            x0, y0, x1, y1 = params.box
            np.testing.assert_allclose(where, [(26 / 48 - x0) / (x1 - x0), (20 / 40 - y0) / (y1 - y0)], atol=0.02)
    assert flips == ({False, True} if spatial_idx == -1 else {False})


def test_same_resolution_flow_is_cropped_exactly_like_rgb():
    cfg = _cfg()
    rgb, full = _scene()
    flow = np.stack([np.full_like(full, 3.0), full], axis=-1)
    out = transform_modalities(cfg, {"rgb": rgb, "flow": flow}, -1, np.random.RandomState(0))
    torch.testing.assert_close(out["flow"][1], out["rgb"][0])


def test_without_shared_crop_pose_is_centred():
    cfg = _cfg()
    cfg.DATA.SAME_CROP_ACROSS_MODALITIES = False
    rgb, _ = _scene()
    centre = Keypoints(np.array([[[24.0, 20.0]]], np.float32), (40, 48))
    boxes = set()
    for seed in range(4):
        out = transform_modalities(cfg, {"rgb": rgb[:1], "pose": centre}, -1, np.random.RandomState(seed))
        np.testing.assert_allclose(_centroid(out["pose"][0, 0]), [0.5, 0.5], atol=1e-3)
        boxes.add(tuple(_centroid(out["rgb"][0, 0]).round(3)))
    assert len(boxes) > 1  # RGB still crops at random


def test_modality_names_are_checked():
    check_modalities(["flow", "rgb", "pose"])
    with pytest.raises(KeyError, match=r"DATA.MODALITIES must be one of \['flow', 'pose', 'rgb'\], got 'depth'"):
        check_modalities(["rgb", "depth"])
    for names in ([], ["rgb", "rgb"]):
        with pytest.raises(ValueError, match="distinct modalities, at least one"):
            check_modalities(names)


# ------------------------------------------------------------------------------------------------ #
# EgoToy: exact flow frames and glyph keypoints, written by make_egotoy(write_flow, write_pose)
# ------------------------------------------------------------------------------------------------ #
def test_egotoy_items_hold_flow_and_keypoint_heatmaps(cfg, egotoy_root):
    cfg.DATA.MODALITIES = ["rgb", "flow", "pose"]
    cfg.DATA.POSE_SIZE, cfg.DATA.POSE_SIGMA = 16, 1.0
    ds = build_dataset("EgoToy", cfg, "val")
    item = ds[3]
    rgb, flow, pose = (item["modalities"][m][0] for m in ("rgb", "flow", "pose"))
    assert item["inputs"][0] is rgb and rgb.shape == (3, 4, 32, 32)
    assert flow.shape == (2, 4, 32, 32) and pose.shape == (5, 4, 16, 16)
    # a 32 px centre crop of 32 px frames: the flow is the exact flow of the frames read, in pixels
    indices = ds.frame_indices(3, 0)
    exact = torch.from_numpy(ds.flow_frames(3).read(indices)).permute(3, 0, 1, 2)
    mean, std = (torch.tensor(v).view(2, 1, 1, 1) for v in (cfg.DATA.FLOW_MEAN, cfg.DATA.FLOW_STD))
    torch.testing.assert_close(flow * std + mean, exact)
    assert exact.abs().max() > 0.5 and exact.abs().max() < 20
    # the heatmap of the glyph's centre peaks where the keypoint file puts it (16 / 32 of its pixels)
    segment = ds.segments[3]
    with open(os.path.join(egotoy_root, segment.participant_id, "pose", segment.video_id + ".json")) as f:
        points = np.array(json.load(f)["frames"])[indices]
    peaks = [divmod(pose[0, t].argmax().item(), 16) for t in range(4)]
    np.testing.assert_allclose([(c + 0.5, r + 0.5) for r, c in peaks], points[:, 0] / 2, atol=0.75)
    assert pose.max() == pytest.approx((1.0 - cfg.DATA.POSE_MEAN) / cfg.DATA.POSE_STD, abs=0.35)


def test_modalities_only_with_several_and_inputs_from_the_first(cfg):
    assert "modalities" not in build_dataset("EgoToy", cfg, "val")[0]
    cfg.DATA.MODALITIES = ["flow", "rgb"]
    item = build_dataset("EgoToy", cfg, "val")[0]
    assert set(item["modalities"]) == {"flow", "rgb"} and item["inputs"][0].shape[0] == 2
    assert item["inputs"][0] is item["modalities"]["flow"][0]


def test_loader_and_episodes_batch_every_modality(cfg):
    cfg.DATA.MODALITIES = ["rgb", "flow", "pose"]
    cfg.DATA.POSE_SIZE = 8
    cfg.MODEL.ARCH, cfg.SLOWFAST.ALPHA = "slowfast", 2
    batch = next(iter(construct_loader(cfg, "train")))
    slow, fast = batch["modalities"]["flow"]
    assert slow.shape == (4, 2, 2, 24, 24) and fast.shape == (4, 2, 4, 24, 24)
    assert batch["modalities"]["pose"][1].shape == (4, 5, 4, 8, 8)
    assert batch["inputs"][1].shape == (4, 3, 4, 24, 24)
    torch.testing.assert_close(batch["inputs"][0], batch["modalities"]["rgb"][0])
    cfg.FEW_SHOT.WAY, cfg.FEW_SHOT.SHOT, cfg.FEW_SHOT.QUERY = 2, 1, 1
    episode = next(iter(construct_episode_loader(cfg, "train", num_episodes=1)))
    assert episode["support"][1].shape == (2, 3, 4, 24, 24)
    assert episode["query_modalities"]["flow"][1].shape == (2, 2, 4, 24, 24)
    assert episode["support_modalities"]["pose"][0].shape == (2, 5, 2, 8, 8)


def test_flow_only_slowfast_config_runs_on_egotoy_flow(egotoy_root):
    path = os.path.join(REPO_ROOT, "configs", "EgoToy", "SLOWFAST_FLOW.yaml")
    cfg = load_config(parse_args(["--cfg", path, "NUM_GPUS", "0", "DATA.PATH_PREFIX", egotoy_root,
                                  "DATA.NUM_FRAMES", "4", "DATA.TEST_CROP_SIZE", "32",
                                  "DATA_LOADER.NUM_WORKERS", "0", "TRAIN.BATCH_SIZE", "2"]), path)
    assert cfg.DATA.MODALITIES == ["flow"] and cfg.DATA.INPUT_CHANNEL_NUM == [2, 2]
    batch = next(iter(construct_loader(cfg, "val")))
    slow, fast = batch["inputs"]
    assert slow.shape == (2, 2, 2, 32, 32) and fast.shape == (2, 2, 4, 32, 32) and "modalities" not in batch
    model = build_model(cfg).eval()
    with torch.no_grad():
        logits = model(batch["inputs"])["logits"]
    assert logits.shape == (2, 24) and torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------------------ #
# MM-CDFSL: flow [H,W,2] and 21 heatmaps [H,W,21] as one .npy per frame, stand-ins for a MECCANO split
# ------------------------------------------------------------------------------------------------ #
def test_mmcdfsl_npy_flow_and_heatmaps(tmp_path):
    fmt = CDFSL_FORMATS["meccano"]
    clips = [{"video_id": "0001", "start_frame": 2, "action_id_internal": 0, "action_name": "a"},
             {"video_id": "0002", "start_frame": 1, "action_id_internal": 1, "action_name": "b"}]
    ann = tmp_path / "cdfsl" / fmt.folder
    ann.mkdir(parents=True)
    (ann / "meccano_val.json").write_text(json.dumps({"split": "val", "clips": clips}))
    data = tmp_path / "Data"
    for clip in clips:
        fields = {"video_id": clip["video_id"]}
        for n in range(1, 5):  # frames 1..4: the clip starting at frame 2 reads 2, 3, 4 and 4 again
            write_frame(str(data / fmt.frames.format(**fields) / fmt.frame_template.format(n)), n)
            flow = np.stack([np.full((12, 16), n), np.full((12, 16), -n)], axis=-1).astype(np.float32)
            os.makedirs(data / fmt.flow.format(**fields), exist_ok=True)
            np.save(data / fmt.flow.format(**fields) / fmt.npy_template.format(n), flow)
            os.makedirs(data / fmt.pose.format(**fields), exist_ok=True)
            np.save(data / fmt.pose.format(**fields) / fmt.npy_template.format(n),
                    np.full((8, 8, 21), n / 10, np.float32))
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR, cfg.DATA.PATH_PREFIX = str(tmp_path / "cdfsl"), str(data)
    cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.POSE_SIZE = 4, 16, 8
    cfg.DATA.MODALITIES = ["rgb", "flow", "pose"]
    cfg.MODEL.ARCH = "slow"
    ds = build_dataset("MMCDFSL", cfg, "meccano_val")
    item = ds[0]
    flow, pose = item["modalities"]["flow"][0], item["modalities"]["pose"][0]
    assert item["inputs"][0].shape == (3, 4, 16, 16) and flow.shape == (2, 4, 16, 16) and pose.shape == (21, 4, 8, 8)
    numbers = torch.tensor([2.0, 3.0, 4.0, 4.0]).view(1, 4, 1, 1)
    mean, std = (torch.tensor(v).view(2, 1, 1, 1) for v in (cfg.DATA.FLOW_MEAN, cfg.DATA.FLOW_STD))
    torch.testing.assert_close(flow * std + mean, torch.cat([numbers, -numbers]).expand(2, 4, 16, 16))
    torch.testing.assert_close(pose * cfg.DATA.POSE_STD + cfg.DATA.POSE_MEAN, (numbers / 10).expand(21, 4, 8, 8))
