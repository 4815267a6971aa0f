"""Pose: keypoints rendered as Gaussians through a crop box, heatmaps resampled from the same box."""
import dataclasses
import math

import numpy as np
import torch

from ego_fsar.datasets.pose import Heatmaps, Keypoints
from ego_fsar.datasets.transform import SpatialParams

# the right half of a 20 x 40 frame: x in [20, 40), y in [0, 20)
RIGHT_HALF = SpatialParams(height=20, width=40, scale=20, y=0, x=20, size=20, flip=False)


def test_keypoints_are_gaussians_at_their_place_in_the_crop():
    points = np.array([[[25.0, 13.0], [5.0, 5.0]]], np.float32)  # [T=1, K=2, (x, y)]
    maps = Keypoints(points, (20, 40)).render(RIGHT_HALF, 10, sigma=1.5)
    assert maps.shape == (1, 2, 10, 10)
    # (25, 13) -> ((25 - 20) / 20 * 10, 13 / 20 * 10) = (2.5, 6.5): the centre of pixel (row 6, col 2)
    assert maps[0, 0].argmax().item() == 6 * 10 + 2 and maps[0, 0, 6, 2].item() == 1.0
    assert math.isclose(maps[0, 0, 6, 3].item(), math.exp(-1 / (2 * 1.5 ** 2)), rel_tol=1e-5)
    assert maps[0, 1].max() < 1e-6  # left of the crop
    mirrored = Keypoints(points, (20, 40)).render(dataclasses.replace(RIGHT_HALF, flip=True), 10, sigma=1.5)
    torch.testing.assert_close(mirrored, maps.flip(-1))


def test_heatmaps_are_resampled_from_the_crop_box():
    maps = np.zeros((2, 10, 20, 3), np.float32)  # half the resolution of the 20 x 40 frame
    maps[:, 4:6, 14:16, 1] = 1.0  # frame pixels y 8..12, x 28..32
    out = Heatmaps(maps).render(RIGHT_HALF, 20, sigma=0)
    assert out.shape == (2, 3, 20, 20) and out[:, [0, 2]].abs().max() == 0
    row, col = divmod(out[0, 1].argmax().item(), 20)
    assert (row, col) in {(r, c) for r in (9, 10) for c in (9, 10)}  # (28..32 - 20, 8..12) at 20 px
